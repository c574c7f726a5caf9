"""A fix for CPython's selector socket transport: ``writelines`` after the connection was lost.

CPython's ``_SelectorSocketTransport.write`` drops data written after the connection was lost
(and counts it), but ``writelines`` does not check: it buffers the data, and then dereferences
the loop it already forgot, raising ``AttributeError: 'NoneType' object has no attribute
'_add_writer'`` (python/cpython#136234; 3.12 and 3.13 before the fix). redis-py writes every
command with ``writelines``: a pooled connection that Redis (or the network) reset between two
commands raised that instead of a connection error, which is not retried, escapes the Redis
boundary untranslated, and ended the loop that made the call (under the plain asyncio loop of
``marketpulse worker`` and ``monitor`` and of a library user; uvicorn's uvloop is not affected).

``install()`` makes ``writelines`` do what ``write`` does after a loss, as the upstream fix does:
the data goes nowhere and the caller learns of the loss from its next read (redis-py then
reconnects and retries). Idempotent; a no-op where the class is absent.
"""

from __future__ import annotations

import asyncio.selector_events
from collections.abc import Callable, Iterable
from typing import Any

_MARK = "_marketpulse_checks_conn_lost"


def install() -> None:
    cls: Any = getattr(asyncio.selector_events, "_SelectorSocketTransport", None)
    if cls is None or getattr(cls.writelines, _MARK, False):
        return
    original: Callable[[Any, Iterable[bytes]], None] = cls.writelines

    def writelines(self: Any, list_of_data: Iterable[bytes]) -> None:
        if self._conn_lost:  # as write(): the connection is gone, the data with it
            self._conn_lost += 1
            return
        original(self, list_of_data)

    setattr(writelines, _MARK, True)
    cls.writelines = writelines
