"""Translate an HTTP answer from a market data API into our errors (shared by the adapters)."""

from __future__ import annotations

import json
from typing import Any

from marketpulse.errors import PermanentSourceError, TransientSourceError
from marketpulse.infra.retry import retry_after_s


def check_status(source: str, status: int, retry_after: str | None, text: str) -> None:
    """Raise for a non-2xx answer: 408/425/429/5xx are transient, other 4xx permanent."""
    if status < 400:
        return
    snippet = text[:120].replace("\n", " ")
    if status == 429 or status in (408, 425) or status >= 500:
        raise TransientSourceError(
            f"{source}: HTTP {status}: {snippet}", retry_after=retry_after_s(retry_after)
        )
    raise PermanentSourceError(f"{source}: HTTP {status}: {snippet}")


def parse_json(source: str, text: str) -> Any:
    """The body as JSON, or PermanentSourceError for a garbage payload."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise PermanentSourceError(f"{source}: response is not JSON: {text[:80]!r}") from exc
