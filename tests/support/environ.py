"""The environment for a process a test starts with settings of its own choosing."""

from __future__ import annotations

import os

from marketpulse.config import ENV_FILE_VAR


def without_settings() -> dict[str, str]:
    """``os.environ`` without any ``MARKETPULSE_*`` setting, but with the suite's
    ``MARKETPULSE_ENV_FILE`` (no dotenv file), so a developer's ``.env`` stays out too."""
    return {
        k: v for k, v in os.environ.items() if not k.startswith("MARKETPULSE_") or k == ENV_FILE_VAR
    }
