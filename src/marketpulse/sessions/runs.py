"""The run stream: analysis runs as durable work on a Redis Streams consumer group.

The script that makes a run current (``analysis_start``, ``analysis_restart``) queues it here in
the same step (``XADD ... MAXLEN ~``); workers read it with ``XREADGROUP``, keep it alive by
resetting its pending entry's idle time (``runs_heartbeat``), and ``XACK`` it once the run has
ended. An entry idle past the reclaim bound has lost its worker and is taken over with
``XAUTOCLAIM``. These are the stream commands used directly: taskiq-redis's stream broker
reclaims only when new messages arrive and after a 600 s default idle, its reclaim lock has no
timeout (a SIGKILL holding it blocks reclaim) and its Cluster broker never reclaims, so it could
not meet a bound of seconds.

One stream, ``mp:{runs}:stream`` (keys.RUN_STREAM). On a Redis Cluster a script cannot touch a
session's slot and the stream's slot at once, so Cluster would need the stream co-located with
the sessions (one stream per slot range, hash-tagged alike) or a relay; not built (the service
runs on a standalone Redis).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from marketpulse.errors import RedisUnavailable
from marketpulse.infra.redis import keys
from marketpulse.infra.redis.client import RedisClient
from marketpulse.sessions.store import SCRIPTS

RECLAIM_PAGES = 10  # XAUTOCLAIM pages per reclaim pass (each of ``count`` entries)


@dataclass(frozen=True, slots=True)
class RunEntry:
    """One queued run. ``fresh``: delivered for the first time (not reclaimed from a dead
    worker, not handed back by a stopping one), so its modelled work is timed from its enqueue."""

    entry_id: str
    session_id: str
    run_id: str
    ticker: str
    fresh: bool

    @property
    def enqueued_ms(self) -> int:
        """Redis's clock when the run was queued (the entry id's first part)."""
        return int(self.entry_id.split("-", 1)[0])


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def _entry(raw_id: Any, fields: Any, *, fresh: bool) -> RunEntry | None:
    if not fields:  # trimmed away while pending (XCLAIM of a deleted entry)
        return None
    f = {_s(k): _s(v) for k, v in fields.items()}
    return RunEntry(_s(raw_id), f["s"], f["r"], f["t"], fresh and "h" not in f)


class RunQueue:
    """The stream commands of the run workers (the pooled client: a blocking read holds one
    connection, never the hot path's pipelined one). Every method raises RedisUnavailable when
    Redis fails (the boundary translates)."""

    def __init__(self, redis: RedisClient) -> None:
        self.redis = redis
        self._heartbeat = redis.script(SCRIPTS, "runs_heartbeat")

    async def ensure_group(self) -> None:
        """Create the stream and its group if missing (idempotent). From id 0: a run queued
        before any worker existed is delivered too."""
        try:
            await self.redis.call("XGROUP CREATE", keys.RUN_STREAM, keys.RUN_GROUP, "0", "MKSTREAM")
        except RedisUnavailable as exc:
            if "BUSYGROUP" not in exc.message:  # the error reply of a group that exists
                raise

    async def read(self, consumer: str, count: int, block_ms: int | None) -> list[RunEntry]:
        """New runs for ``consumer`` (they become its pending entries); waits up to
        ``block_ms`` for one (None: does not wait)."""
        block: tuple[str | int, ...] = () if block_ms is None else ("BLOCK", block_ms)
        reply: Any = await self.redis.call(
            "XREADGROUP", "GROUP", keys.RUN_GROUP, consumer, "COUNT", count, *block,
            "STREAMS", keys.RUN_STREAM, ">",
        )  # fmt: skip
        out: list[RunEntry] = []
        for _stream, messages in reply or ():
            for raw_id, fields in messages:
                e = _entry(raw_id, fields, fresh=True)
                if e is not None:
                    out.append(e)
        return out

    async def ack(self, entry_ids: Sequence[str]) -> None:
        if entry_ids:
            await self.redis.call("XACK", keys.RUN_STREAM, keys.RUN_GROUP, *entry_ids)

    async def heartbeat(self, consumer: str, entry_ids: Sequence[str]) -> list[str]:
        """Keep ``consumer``'s runs alive; the ids that are no longer its own."""
        lost = await self._heartbeat([keys.RUN_STREAM], [keys.RUN_GROUP, consumer, *entry_ids])
        return [_s(x) for x in lost]

    async def reclaim(self, consumer: str, min_idle_ms: int, count: int) -> list[RunEntry]:
        """Take over the runs whose worker stopped heartbeating ``min_idle_ms`` ago."""
        out: list[RunEntry] = []
        cursor: Any = "0-0"
        for _ in range(RECLAIM_PAGES):
            reply: Any = await self.redis.call(
                "XAUTOCLAIM", keys.RUN_STREAM, keys.RUN_GROUP, consumer, min_idle_ms, cursor,
                "COUNT", count,
            )  # fmt: skip
            cursor, claimed = reply[0], reply[1]
            for raw_id, fields in claimed:
                e = _entry(raw_id, fields, fresh=False)
                if e is not None:
                    out.append(e)
            if _s(cursor) == "0-0":
                break
        return out

    async def prune_consumers(self, min_idle_ms: int) -> int:
        """Forget the group's consumers with nothing pending that have not read for
        ``min_idle_ms`` (workers that are gone; a live one that was idle is recreated by its
        next read). The number forgotten."""
        consumers: Any = await self.redis.call("XINFO CONSUMERS", keys.RUN_STREAM, keys.RUN_GROUP)
        gone = [c["name"] for c in consumers if c["pending"] == 0 and c["idle"] >= min_idle_ms]
        for name in gone:
            await self.redis.call("XGROUP DELCONSUMER", keys.RUN_STREAM, keys.RUN_GROUP, name)
        return len(gone)

    async def own_pending(
        self, consumer: str, skip: Collection[str] = (), count: int = 1000
    ) -> list[RunEntry]:
        """``consumer``'s pending runs but those in ``skip``, read without touching their
        entries (XPENDING, then XRANGE: the delivery count and idle time stay as they are), e.g.
        to resume the runs an outage interrupted. A run trimmed away is left out."""
        pending: Any = await self.redis.call(
            "XPENDING", keys.RUN_STREAM, keys.RUN_GROUP, "-", "+", count, consumer,
            parse_detail=True,
        )  # fmt: skip
        ids = [i for i in (_s(p["message_id"]) for p in pending) if i not in skip]
        if not ids:
            return []
        replies = await self.redis.pipeline([("XRANGE", keys.RUN_STREAM, i, i) for i in ids])
        out: list[RunEntry] = []
        for messages in replies:
            for raw_id, fields in messages or ():
                e = _entry(raw_id, fields, fresh=False)
                if e is not None:
                    out.append(e)
        return out

    async def own(self, consumer: str, count: int = 1000) -> list[RunEntry]:
        """Every run pending for ``consumer`` (with its fields), e.g. to hand them back. This
        includes a run a cancelled read had already taken without our knowing it."""
        pending: Any = await self.redis.call(
            "XPENDING", keys.RUN_STREAM, keys.RUN_GROUP, "-", "+", count, consumer,
            parse_detail=True,
        )  # fmt: skip
        ids: list[Any] = [_s(p["message_id"]) for p in pending]
        if not ids:
            return []
        claimed: Any = await self.redis.call(
            "XCLAIM", keys.RUN_STREAM, keys.RUN_GROUP, consumer, 0, *ids
        )
        out = [_entry(raw_id, fields, fresh=False) for raw_id, fields in claimed]
        return [e for e in out if e is not None]
