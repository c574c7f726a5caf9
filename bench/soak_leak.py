"""The leaky build of ``bench/soak.py --leak``: ``marketpulse serve`` with a deliberate leak,
64 KiB retained per created session and never released. A test hook, never shipped: it is not
a setting of the service, only this script patches it at start. The soak must fail it.

    python bench/soak_leak.py serve
"""

from __future__ import annotations

import sys
from typing import Any

from marketpulse.cli import main
from marketpulse.sessions.service import SessionService

LEAK_BYTES = 64 * 1024
_retained: list[bytearray] = []
_create = SessionService.create


async def _leaky_create(self: SessionService, *args: Any, **kwargs: Any) -> Any:
    _retained.append(bytearray(LEAK_BYTES))  # touched pages: counted in RSS
    return await _create(self, *args, **kwargs)


SessionService.create = _leaky_create  # type: ignore[method-assign]

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
