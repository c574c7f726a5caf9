"""One Redis Streams consumer group: the stream commands every piece of durable work shares.

The analysis runs (``sessions/runs.py``) and the alert outbox (``alerts/outbox.py``) are both
work on a consumer group: read new entries (``XREADGROUP``), take over entries idle past a bound
(``XAUTOCLAIM``, paged), acknowledge (``XACK``), list a consumer's pending entries with their
delivery counts (``XPENDING``), and forget consumers long gone. ``StreamGroup`` holds those
commands once; each feature parses its own entries' fields.

An entry is ``(entry_id, fields)`` with both decoded. An entry trimmed away while pending (a
claim returns it without fields) is left out. Every method raises ``RedisUnavailable`` when
Redis fails (the boundary translates).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence
from typing import Any

from marketpulse.errors import RedisUnavailable
from marketpulse.infra.redis.client import RedisClient

RECLAIM_PAGES = 10  # XAUTOCLAIM pages per reclaim pass (each of ``count`` entries)

Entry = tuple[str, dict[str, str]]


def consumer_name() -> str:
    """A consumer name unique per process and start: ``<host>:<pid>:<random>``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def entries(messages: Any) -> list[Entry]:
    """``[(id, {field: value})]`` of a stream reply's messages, trimmed ones left out."""
    return [
        (_s(raw_id), {_s(k): _s(v) for k, v in fields.items()})
        for raw_id, fields in messages or ()
        if fields
    ]


class StreamGroup:
    """The group ``group`` of the stream ``stream`` (on the pooled client: a blocking read holds
    one pooled connection, never the scripts' pipelined one)."""

    def __init__(self, redis: RedisClient, stream: str, group: str) -> None:
        self.redis = redis
        self.stream = stream
        self.group = group

    async def ensure(self, start: str) -> None:
        """Create the stream and the group, delivering from ``start`` ("0": every entry, "$":
        those added from now on), if missing (idempotent)."""
        try:
            await self.redis.call("XGROUP CREATE", self.stream, self.group, start, "MKSTREAM")
        except RedisUnavailable as exc:
            if "BUSYGROUP" not in exc.message:  # the error reply of a group that exists
                raise

    async def read(self, consumer: str, count: int, block_ms: int | None) -> list[Entry]:
        """New entries (they become ``consumer``'s pending ones); waits up to ``block_ms`` for
        one (None: does not wait)."""
        block: tuple[str | int, ...] = () if block_ms is None else ("BLOCK", block_ms)
        reply: Any = await self.redis.call(
            "XREADGROUP", "GROUP", self.group, consumer, "COUNT", count, *block,
            "STREAMS", self.stream, ">",
        )  # fmt: skip
        return [e for _stream, messages in reply or () for e in entries(messages)]

    async def reclaim(self, consumer: str, min_idle_ms: int, count: int) -> list[Entry]:
        """Take over the entries idle for ``min_idle_ms`` (their consumer died, or failed to
        finish them), up to ``RECLAIM_PAGES`` pages of ``count``."""
        out: list[Entry] = []
        cursor: Any = "0-0"
        for _ in range(RECLAIM_PAGES):
            reply: Any = await self.redis.call(
                "XAUTOCLAIM", self.stream, self.group, consumer, min_idle_ms, cursor,
                "COUNT", count,
            )  # fmt: skip
            cursor = reply[0]
            out += entries(reply[1])
            if _s(cursor) == "0-0":
                break
        return out

    async def ack(self, entry_ids: Sequence[str]) -> None:
        if entry_ids:
            await self.redis.call("XACK", self.stream, self.group, *entry_ids)

    async def pending(
        self, consumer: str, first: str = "-", last: str = "+", count: int = 1000
    ) -> list[tuple[str, int]]:
        """``consumer``'s pending entries from ``first`` to ``last``: ``(id, times delivered)``,
        read without touching them (their delivery counts and idle times stay as they are)."""
        reply: Any = await self.redis.call(
            "XPENDING", self.stream, self.group, first, last, count, consumer, parse_detail=True
        )
        return [(_s(p["message_id"]), int(p["times_delivered"])) for p in reply]

    async def pending_count(self) -> int:
        """Entries read but not acknowledged, over every consumer (0 without a group)."""
        try:
            reply: Any = await self.redis.call("XPENDING", self.stream, self.group)
        except RedisUnavailable as exc:
            if "NOGROUP" in exc.message:
                return 0
            raise
        return int(reply["pending"])

    async def prune_consumers(self, min_idle_ms: int) -> int:
        """Forget the consumers with nothing pending that have not read for ``min_idle_ms``
        (processes that are gone; a live one that was idle is recreated by its next read).
        The number forgotten."""
        consumers: Any = await self.redis.call("XINFO CONSUMERS", self.stream, self.group)
        gone = [c["name"] for c in consumers if c["pending"] == 0 and c["idle"] >= min_idle_ms]
        for name in gone:
            await self.redis.call("XGROUP DELCONSUMER", self.stream, self.group, name)
        return len(gone)
