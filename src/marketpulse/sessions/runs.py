"""The run stream: analysis runs as durable work on a Redis Streams consumer group.

The script that makes a run current (``analysis_start``, ``analysis_restart``) queues it here in
the same step (``XADD ... MAXLEN ~``); workers read it with ``XREADGROUP``, keep it alive by
resetting its pending entry's idle time (``runs_heartbeat``), and ``XACK`` it once the run has
ended. An entry idle past the reclaim bound has lost its worker and is taken over with
``XAUTOCLAIM``. These are the stream commands used directly: taskiq-redis's stream broker
reclaims only when new messages arrive and after a 600 s default idle, its reclaim lock has no
timeout (a SIGKILL holding it blocks reclaim) and its Cluster broker never reclaims, so it could
not meet a bound of seconds.

One stream per partition (``keys.run_stream``, ``infra/redis/partitions.py``), hash-tagged
like its sessions, so the script that makes a run current queues it on the session's own slot;
each stream has its own consumer group ``keys.RUN_GROUP``. A worker reads every partition, one
``XREADGROUP`` per stream (several streams in one call would span slots on a Redis Cluster).
A run is known by its partition and entry id (``RunKey``): entry ids are unique per stream only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from marketpulse.infra.redis import keys, partitions
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
    partition: int = 0

    @property
    def key(self) -> RunKey:
        """The run's entry across partitions: (partition, entry id)."""
        return (self.partition, self.entry_id)

    @property
    def enqueued_ms(self) -> int:
        """Redis's clock when the run was queued (the entry id's first part)."""
        return int(self.entry_id.split("-", 1)[0])


RunKey = tuple[int, str]
"""A run stream entry: its partition and its entry id (unique within that stream only)."""


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def _run(entry: Entry, partition: int, *, fresh: bool) -> RunEntry:
    entry_id, f = entry
    return RunEntry(entry_id, f["s"], f["r"], f["t"], fresh and "h" not in f, partition)


def by_partition(run_keys: Iterable[RunKey]) -> dict[int, list[str]]:
    """Entry ids grouped by their partition."""
    out: dict[int, list[str]] = {}
    for partition, entry_id in run_keys:
        out.setdefault(partition, []).append(entry_id)
    return out


class RunQueue:
    """The stream commands of the run workers, on the group ``keys.RUN_GROUP`` of every
    partition's stream (``infra/redis/stream_group.py``). Every method raises RedisUnavailable
    when Redis fails (the boundary translates)."""

    def __init__(self, redis: RedisClient) -> None:
        self.redis = redis
        self.groups = [
            StreamGroup(redis, keys.run_stream(p), keys.RUN_GROUP) for p in partitions.ALL
        ]
        self._heartbeat = redis.script(SCRIPTS, "runs_heartbeat")

    @property
    def partitions(self) -> range:
        return partitions.ALL

    async def ensure_group(self) -> None:
        """Create every partition's stream and group if missing (idempotent). From id 0: a run
        queued before any worker existed is delivered too."""
        await asyncio.gather(*(g.ensure("0") for g in self.groups))

    async def read_partition(
        self, partition: int, consumer: str, count: int, block_ms: int | None
    ) -> list[RunEntry]:
        """New runs of one partition for ``consumer`` (they become its pending entries); waits
        up to ``block_ms`` for one (None: does not wait)."""
        got = await self.groups[partition].read(consumer, count, block_ms)
        return [_run(e, partition, fresh=True) for e in got]

    async def read(self, consumer: str, count: int, block_ms: int | None) -> list[RunEntry]:
        """New runs of every partition (one read each, in parallel: this waits for the slowest,
        up to ``block_ms``; a worker's loops read each partition on its own)."""
        got = await asyncio.gather(
            *(self.read_partition(p, consumer, count, block_ms) for p in self.partitions)
        )
        return [e for part in got for e in part]

    async def ack(self, run_keys: Iterable[RunKey]) -> None:
        for partition, ids in by_partition(run_keys).items():
            await self.groups[partition].ack(ids)

    async def heartbeat(self, consumer: str, run_keys: Sequence[RunKey]) -> list[RunKey]:
        """Keep ``consumer``'s runs alive; those that are no longer its own."""
        lost: list[RunKey] = []
        for partition, ids in by_partition(run_keys).items():
            stream = keys.run_stream(partition)
            got = await self._heartbeat([stream], [keys.RUN_GROUP, consumer, *ids])
            lost += [(partition, _s(x)) for x in got]
        return lost

    async def reclaim(self, consumer: str, min_idle_ms: int, count: int) -> list[RunEntry]:
        """Take over the runs whose worker stopped heartbeating ``min_idle_ms`` ago."""
        taken = await asyncio.gather(
            *(g.reclaim(consumer, min_idle_ms, count) for g in self.groups)
        )
        return [_run(e, p, fresh=False) for p, part in enumerate(taken) for e in part]

    async def prune_consumers(self, min_idle_ms: int) -> int:
        """Forget the groups' consumers with nothing pending that have not read for
        ``min_idle_ms`` (workers that are gone; a live one that was idle is recreated by its
        next read). The number forgotten."""
        return sum(await asyncio.gather(*(g.prune_consumers(min_idle_ms) for g in self.groups)))

    async def own_pending(
        self, consumer: str, skip: Collection[RunKey] = (), count: int = 1000
    ) -> list[RunEntry]:
        """``consumer``'s pending runs but those in ``skip``, read without touching their
        entries (XPENDING, then XRANGE: the delivery count and idle time stay as they are), e.g.
        to resume the runs an outage interrupted. A run trimmed away is left out."""
        out: list[RunEntry] = []
        for p, group in enumerate(self.groups):
            pending = await group.pending(consumer, count=count)
            ids = [i for i, _ in pending if (p, i) not in skip]
            if not ids:
                continue
            replies = await self.redis.pipeline([("XRANGE", group.stream, i, i) for i in ids])
            out += [_run(e, p, fresh=False) for messages in replies for e in entries(messages)]
        return out

    async def own(self, consumer: str, count: int = 1000) -> list[RunEntry]:
        """Every run pending for ``consumer`` (with its fields), e.g. to hand them back. This
        includes a run a cancelled read had already taken without our knowing it."""
        out: list[RunEntry] = []
        for p, group in enumerate(self.groups):
            ids = [i for i, _ in await group.pending(consumer, count=count)]
            if not ids:
                continue
            claimed: Any = await self.redis.call(
                "XCLAIM", group.stream, keys.RUN_GROUP, consumer, 0, *ids
            )
            out += [_run(e, p, fresh=False) for e in entries(claimed)]
        return out
