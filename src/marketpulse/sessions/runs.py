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

from marketpulse.infra.redis import keys
from marketpulse.infra.redis.client import RedisClient
from marketpulse.infra.redis.stream_group import Entry, StreamGroup, entries
from marketpulse.sessions.store import SCRIPTS


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


def _run(entry: Entry, *, fresh: bool) -> RunEntry:
    entry_id, f = entry
    return RunEntry(entry_id, f["s"], f["r"], f["t"], fresh and "h" not in f)


class RunQueue:
    """The stream commands of the run workers, on the group ``keys.RUN_GROUP``
    (``infra/redis/stream_group.py``). Every method raises RedisUnavailable when Redis fails
    (the boundary translates)."""

    def __init__(self, redis: RedisClient) -> None:
        self.redis = redis
        self.group = StreamGroup(redis, keys.RUN_STREAM, keys.RUN_GROUP)
        self._heartbeat = redis.script(SCRIPTS, "runs_heartbeat")

    async def ensure_group(self) -> None:
        """Create the stream and its group if missing (idempotent). From id 0: a run queued
        before any worker existed is delivered too."""
        await self.group.ensure("0")

    async def read(self, consumer: str, count: int, block_ms: int | None) -> list[RunEntry]:
        """New runs for ``consumer`` (they become its pending entries); waits up to
        ``block_ms`` for one (None: does not wait)."""
        return [_run(e, fresh=True) for e in await self.group.read(consumer, count, block_ms)]

    async def ack(self, entry_ids: Sequence[str]) -> None:
        await self.group.ack(entry_ids)

    async def heartbeat(self, consumer: str, entry_ids: Sequence[str]) -> list[str]:
        """Keep ``consumer``'s runs alive; the ids that are no longer its own."""
        lost = await self._heartbeat([keys.RUN_STREAM], [keys.RUN_GROUP, consumer, *entry_ids])
        return [_s(x) for x in lost]

    async def reclaim(self, consumer: str, min_idle_ms: int, count: int) -> list[RunEntry]:
        """Take over the runs whose worker stopped heartbeating ``min_idle_ms`` ago."""
        taken = await self.group.reclaim(consumer, min_idle_ms, count)
        return [_run(e, fresh=False) for e in taken]

    async def prune_consumers(self, min_idle_ms: int) -> int:
        """Forget the group's consumers with nothing pending that have not read for
        ``min_idle_ms`` (workers that are gone; a live one that was idle is recreated by its
        next read). The number forgotten."""
        return await self.group.prune_consumers(min_idle_ms)

    async def own_pending(
        self, consumer: str, skip: Collection[str] = (), count: int = 1000
    ) -> list[RunEntry]:
        """``consumer``'s pending runs but those in ``skip``, read without touching their
        entries (XPENDING, then XRANGE: the delivery count and idle time stay as they are), e.g.
        to resume the runs an outage interrupted. A run trimmed away is left out."""
        pending = await self.group.pending(consumer, count=count)
        ids = [i for i, _ in pending if i not in skip]
        if not ids:
            return []
        replies = await self.redis.pipeline([("XRANGE", keys.RUN_STREAM, i, i) for i in ids])
        return [_run(e, fresh=False) for messages in replies for e in entries(messages)]

    async def own(self, consumer: str, count: int = 1000) -> list[RunEntry]:
        """Every run pending for ``consumer`` (with its fields), e.g. to hand them back. This
        includes a run a cancelled read had already taken without our knowing it."""
        ids = [i for i, _ in await self.group.pending(consumer, count=count)]
        if not ids:
            return []
        claimed: Any = await self.redis.call(
            "XCLAIM", keys.RUN_STREAM, keys.RUN_GROUP, consumer, 0, *ids
        )
        return [_run(e, fresh=False) for e in entries(claimed)]
