"""Awaiting log records: a test waits for a line under a deadline instead of sleeping.

``LogWatch(logger, level, match)`` keeps the records of ``logger`` (and its children) at
``level`` and above that ``match`` accepts, while it is entered (``with``); ``await
watch.until(found)`` returns once ``found()`` is true, re-checked at each new record. The app
logs from the event loop's thread, so a record is appended before the waiter runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Self


def _any(_: logging.LogRecord) -> bool:
    return True


class LogWatch(logging.Handler):
    def __init__(
        self,
        logger: str,
        level: int = logging.DEBUG,
        match: Callable[[logging.LogRecord], bool] = _any,
    ) -> None:
        super().__init__(level)
        self.logger = logging.getLogger(logger)
        self.match = match
        self.records: list[logging.LogRecord] = []
        self._arrived = asyncio.Event()
        self._level = self.logger.level

    def emit(self, record: logging.LogRecord) -> None:
        if self.match(record):
            self.records.append(record)
            self._arrived.set()

    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]

    async def until(self, found: Callable[[], bool], within: float = 30.0) -> None:
        async with asyncio.timeout(within):
            while not found():
                self._arrived.clear()
                await self._arrived.wait()

    def __enter__(self) -> Self:
        self.logger.addHandler(self)
        if self.logger.getEffectiveLevel() > self.level:  # let the records it wants through
            self.logger.setLevel(self.level)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.logger.removeHandler(self)
        self.logger.setLevel(self._level)
