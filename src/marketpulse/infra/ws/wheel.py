"""One timer per event loop for the timers every socket has (the keepalive ping, the session
socket's expiry watch), instead of one loop timer each.

Why: a loop timer is several objects the garbage collector tracks (the handle, the libuv
timer, its context, the bound method), made again at every period. With 10,000 sockets that
is hundreds a second, each living a whole period: long enough to be promoted to the oldest
generation, whose growth by a quarter triggers a full collection, which walks every object of
the process (~850,000 at 10,000 sockets: a pause of a second or more; docs/deploy.md,
Fan-out). Here an entry is a member of a set in its time slot, and each occupied slot has one
loop timer. Entries are objects with a ``due()`` method that remember their slot (``slot``);
the owner removes its entry when it closes (``discard``), so a set holds only live entries.
"""

from __future__ import annotations

import asyncio
import logging
import math
import weakref
from typing import Protocol

log = logging.getLogger(__name__)

TICK_S = 0.25  # resolution: an entry is due at most this late


class Due(Protocol):
    slot: int | None

    def due(self) -> None: ...


class TimerWheel:
    """Entries due at a loop time, rounded up to ``tick_s``."""

    __slots__ = ("_loop", "_slots", "_tick")

    def __init__(self, loop: asyncio.AbstractEventLoop, tick_s: float = TICK_S) -> None:
        self._loop = loop
        self._tick = tick_s
        self._slots: dict[int, set[Due]] = {}

    def add(self, entry: Due, delay_s: float) -> None:
        """``entry.due()`` in ``delay_s`` seconds (replacing a pending one of the same entry)."""
        self.discard(entry)
        slot = math.ceil((self._loop.time() + max(0.0, delay_s)) / self._tick)
        bucket = self._slots.get(slot)
        if bucket is None:
            bucket = self._slots[slot] = set()
            self._loop.call_at(slot * self._tick, self._fire, slot)
        bucket.add(entry)
        entry.slot = slot

    def discard(self, entry: Due) -> None:
        """Cancel ``entry``'s pending call, if any."""
        if entry.slot is not None:
            bucket = self._slots.get(entry.slot)
            if bucket is not None:
                bucket.discard(entry)
            entry.slot = None

    def __len__(self) -> int:
        return sum(len(b) for b in self._slots.values())

    def _fire(self, slot: int) -> None:
        for entry in self._slots.pop(slot, ()):
            entry.slot = None
            try:
                entry.due()
            except Exception:  # one entry's bug must not skip the others of its slot
                log.exception("a timer of %r failed", entry)


_wheels: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, TimerWheel] = (
    weakref.WeakKeyDictionary()
)


def wheel() -> TimerWheel:
    """The running loop's wheel (made at its first use, gone with the loop)."""
    loop = asyncio.get_running_loop()
    found = _wheels.get(loop)
    if found is None:
        found = _wheels[loop] = TimerWheel(loop)
    return found
