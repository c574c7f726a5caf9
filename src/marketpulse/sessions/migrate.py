"""The move of session data from the single-stream layout to the partitions (issue 18).

Before the partitions a session was ``mp:{<id>}:session``, the sweep index ``mp:sessions`` and
every run one stream ``mp:{runs}:stream``. On start (``serve`` and ``worker``) ``migrate`` moves
what it finds into the partitions (``infra/redis/keys.py``) and then writes the layout marker
``mp:layout``; once that is there, a start costs one ``GET``.

Guarantees:
- Once and safe with several instances starting together: one instance at a time migrates,
  holding the lease ``mp:lease:migrate`` (renewed before every batch; a migrator that lost it
  stops); the others wait for the marker, and take the lease over if its holder dies.
- Idempotent, step by step: a session is written into its partition by one script on the new
  slot that does nothing if the session is already there (``session_migrate.lua``), then its
  old key is deleted; a migration that dies half way is finished by the next one. The old
  index and stream are deleted last, the marker written after them.
- Nothing is lost: each session keeps its fields, its TTL (``PTTL``, read with the hash in one
  transaction) and its index score; a run that was running (queued or pending in the old
  stream) is re-queued on its partition's stream in the step that writes the session, and the
  session found through the old stream's entries too (a session missing from the old index).
- The old layout is read only here. Instances of the previous version must be stopped first:
  they would keep writing the old keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from marketpulse.errors import RedisUnavailable
from marketpulse.infra.redis import keys
from marketpulse.infra.redis.client import RedisClient
from marketpulse.infra.redis.lease import Lease
from marketpulse.sessions.store import SCRIPTS

log = logging.getLogger(__name__)

LEASE_S = 30.0  # the migrator renews it before every batch
BATCH = 100  # sessions moved concurrently
WAIT_POLL_S = 0.1  # an instance waiting for another's migration looks this often
RETRY_S = 1.0  # Redis unreachable: tried again this often


@dataclass(slots=True)
class MigrationReport:
    """What one migration did (``None`` from ``migrate``: nothing to do, or done elsewhere)."""

    moved: int = 0  # sessions written into their partition
    requeued: int = 0  # of them, with their running run queued again
    existed: int = 0  # already in their partition (an earlier or concurrent migration)
    gone: int = 0  # indexed or queued, but their hash had expired


class LeaseLost(RedisUnavailable):
    """The migration lease was taken by another instance (this one stalled past it)."""


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


async def migrated(redis: RedisClient) -> bool:
    return _s(await redis.call("GET", keys.LAYOUT) or b"") == keys.LAYOUT_VERSION


async def migrate(
    redis: RedisClient, *, stream_maxlen: int = 100_000, lease_s: float = LEASE_S
) -> MigrationReport | None:
    """Bring the data to the partitioned layout (see the module docstring); returns once it is
    there. The report of the migration this call ran, None when there was nothing left to do.
    Raises RedisUnavailable when Redis fails (call it again: it resumes)."""
    lease = Lease(redis, keys.MIGRATE_LEASE, ttl_s=lease_s)
    while not await migrated(redis):
        if not await lease.acquire():
            await asyncio.sleep(WAIT_POLL_S)  # another instance migrates: wait for its marker
            continue
        try:
            if await migrated(redis):  # it finished between our two reads
                return None
            report = await _move(redis, lease, stream_maxlen)
            await redis.call("SET", keys.LAYOUT, keys.LAYOUT_VERSION)
            return report
        finally:
            await lease.release()
    return None


async def migrate_until_done(
    redis: RedisClient, stop: asyncio.Event, *, stream_maxlen: int = 100_000
) -> None:
    """``migrate``, tried again every ``RETRY_S`` while Redis is unreachable (or ``stop``)."""
    warned = False
    while not stop.is_set():
        try:
            report = await migrate(redis, stream_maxlen=stream_maxlen)
        except RedisUnavailable as exc:
            if not warned:
                log.warning("key layout migration waits for Redis: %s", exc)
                warned = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RETRY_S)
            continue
        if report is not None:
            log.info(
                "key layout migrated to %s: %d sessions moved (%d runs queued again), %d already"
                " there, %d expired",
                keys.LAYOUT_VERSION, report.moved, report.requeued, report.existed, report.gone,
            )  # fmt: skip
        return


async def _move(redis: RedisClient, lease: Lease, stream_maxlen: int) -> MigrationReport:
    report = MigrationReport()
    script = redis.script(SCRIPTS, "session_migrate")
    now_ms = int(time.time() * 1000)
    seen: set[str] = set()

    async def batch(ids: Sequence[tuple[str, int]]) -> None:
        if not await lease.acquire():
            raise LeaseLost("another instance took the migration lease", url=redis.url)
        for outcome in await asyncio.gather(*(_one(redis, script, sid, score, stream_maxlen)
                                               for sid, score in ids)):  # fmt: skip
            setattr(report, outcome, getattr(report, outcome) + 1)
            if outcome == "requeued":
                report.moved += 1

    start = 0
    while True:  # the old index, by rank (nothing removes from it until the end)
        page: Any = await redis.call(
            "ZRANGE", keys.OLD_SESSION_INDEX, start, start + BATCH - 1, "WITHSCORES"
        )
        if not page:
            break
        start += len(page)
        ids = [(_s(sid), int(float(score))) for sid, score in page]
        seen.update(sid for sid, _ in ids)
        await batch(ids)
    cursor = "-"
    while True:  # sessions named by the old stream's entries (queued or pending runs)
        got: Any = await redis.call("XRANGE", keys.OLD_RUN_STREAM, cursor, "+", "COUNT", BATCH)
        if not got:
            break
        cursor = "(" + _s(got[-1][0])
        named = {_s(fields[b"s"]) for _id, fields in got if fields and b"s" in fields}
        fresh = sorted(named - seen)
        seen.update(fresh)
        if fresh:
            await batch([(sid, now_ms) for sid in fresh])
        if len(got) < BATCH:
            break
    if not await lease.acquire():
        raise LeaseLost("another instance took the migration lease", url=redis.url)
    await redis.call("DEL", keys.OLD_RUN_STREAM)
    await redis.call("DEL", keys.OLD_SESSION_INDEX)
    return report


async def _one(redis: RedisClient, script: Any, session_id: str, score: int, maxlen: int) -> str:
    """Move one session: 'moved' | 'requeued' | 'existed' | 'gone'."""
    old = keys.old_session(session_id)
    fields, pttl = await redis.pipeline([("HGETALL", old), ("PTTL", old)], transaction=True)
    if not fields:
        return "gone"
    args: list[Any] = [session_id, int(pttl), score, maxlen]
    for k, v in fields.items():
        args += (k, v)
    outcome = _s(await script(list(_new_keys(session_id)), args))
    await redis.call("DEL", old)
    return {"exists": "existed"}.get(outcome, outcome)


def _new_keys(session_id: str) -> tuple[str, str, str, str]:
    partition = keys.session_partition(session_id)
    return (
        keys.session(session_id),
        keys.session_events(session_id),
        keys.run_stream(partition),
        keys.session_index(partition),
    )
