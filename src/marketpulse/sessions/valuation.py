"""The valuation loop: every interval, one leader advances the market tick and revalues every
session at that tick.

Guarantees: one leader across instances (a Redis lease); each session's revaluation is one
atomic script that never touches the TTL, never recreates an expired session (it is skipped and
dropped from the index) and bumps nothing when nothing changed; a revaluation older than the
stored one is refused (the tick fences a deposed leader). The sweep is pipelined in chunks and
keeps a cache of each session's holdings keyed by the holdings version, so the steady state is
one EVALSHA per session with the total computed here (money never goes through Lua numbers).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from marketpulse.errors import MarketDataError
from marketpulse.infra.redis import keys
from marketpulse.infra.redis.lease import Lease
from marketpulse.infra.redis.pipeline import Command, execute_packed
from marketpulse.market.view import Market
from marketpulse.sessions.portfolio import canonical_prices
from marketpulse.sessions.store import SCRIPTS
from marketpulse.timefmt import iso_z, utc_now

log = logging.getLogger(__name__)

CHUNK = 2000
INDEX_GRACE_S = 60.0  # a missing session indexed more recently may be mid-creation: kept
PARALLEL_CHUNKS = 3


class SweepTelemetry(Protocol):
    def sweep_observed(self, seconds: float, n_sessions: int) -> None: ...

    def set_active_sessions(self, n: int) -> None: ...


@dataclass(frozen=True, slots=True)
class SweepReport:
    tick: int
    sessions: int
    updated: int
    unchanged: int
    gone: int
    seconds: float


class ValuationLoop:
    def __init__(
        self,
        redis: Redis,
        market: Market,
        *,
        interval_s: float,
        now: Callable[[], datetime] = utc_now,
        telemetry: SweepTelemetry | None = None,
        lease: Lease | None = None,
    ) -> None:
        self.redis = redis
        self.market = market
        self.interval_s = interval_s
        self.now = now
        self.telemetry = telemetry
        self.lease = lease or Lease(redis, keys.VALUATION_LEASE, ttl_s=max(3 * interval_s, 2.0))
        self._revalue = SCRIPTS.register(redis, "session_revalue")
        self._prune = SCRIPTS.register(redis, "index_prune")
        self._holdings: dict[str, tuple[bytes, dict[str, float]]] = {}
        self.last_report: SweepReport | None = None
        self.ticked = asyncio.Event()  # set after every sweep (tests await it)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                if await self.lease.acquire():
                    await self.run_once()
            except (RedisError, MarketDataError) as exc:
                log.warning("revaluation skipped: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)
        with contextlib.suppress(RedisError):
            await self.lease.release()

    async def run_once(self) -> SweepReport:
        """Advance the market one tick and revalue every session at it."""
        tick = int(await self.redis.incr(keys.MARKET_TICK))
        report = await self.sweep(tick)
        await self.redis.hset(
            keys.MARKET_SNAPSHOT, mapping={"tick": tick, "valued_at": iso_z(self.now())}
        )
        self.last_report = report
        if self.telemetry is not None:
            self.telemetry.sweep_observed(report.seconds, report.sessions)
            self.telemetry.set_active_sessions(report.sessions)
        self.ticked.set()
        self.ticked = asyncio.Event()
        return report

    async def sweep(self, tick: int) -> SweepReport:
        """Revalue every indexed session at ``tick``. Chunks run a few at a time so building one
        chunk here overlaps Redis executing the previous one (bounded: below the pool size)."""
        started = time.perf_counter()
        counts = {"sessions": 0, "updated": 0, "unchanged": 0, "gone": 0}
        valued_at = iso_z(self.now())
        sha = await self.redis.script_load(self._revalue.script)
        gate = asyncio.Semaphore(PARALLEL_CHUNKS)

        async def one(ids: list[str]) -> None:
            async with gate:
                await self._sweep_chunk(ids, tick, valued_at, counts, sha)

        start = 0
        async with asyncio.TaskGroup() as tg:
            while True:
                page = await self.redis.zrange(keys.SESSION_INDEX, start, start + CHUNK - 1)
                if not page:
                    break
                start += len(page)
                tg.create_task(one([x.decode() if isinstance(x, bytes) else str(x) for x in page]))
        return SweepReport(tick=tick, seconds=time.perf_counter() - started, **counts)

    async def _sweep_chunk(
        self, ids: list[str], tick: int, valued_at: str, counts: dict[str, int], sha: str
    ) -> None:
        todo = ids
        for _ in range(3):  # a holdings change between reads sends a session round again
            known = [s for s in todo if s in self._holdings]
            symbols = {t for s in known for t in self._holdings[s][1]}
            prices = await self.market.prices(symbols, tick) if symbols else {}
            texts: dict[frozenset[str], str] = {}
            missing = [s for s in todo if s not in self._holdings]
            commands: list[Command] = []
            for sid in known:
                hv, holdings = self._holdings[sid]
                syms = frozenset(holdings)
                prices_text = texts.get(syms)
                if prices_text is None:
                    prices_text = texts[syms] = canonical_prices({t: prices[t] for t in syms})
                total = round(math.fsum(q * prices[t] for t, q in holdings.items()), 2)
                commands.append(
                    (
                        "EVALSHA",
                        sha,
                        2,
                        keys.session(sid),
                        keys.session_events(sid),
                        tick,
                        hv,
                        repr(total),
                        prices_text,
                        valued_at,
                    )
                )
            for sid in missing:
                commands.append(("HMGET", keys.session(sid), "hv", "holdings"))
            replies = await execute_packed(self.redis, commands)
            again: list[str] = []
            gone: list[str] = []
            for sid, reply in zip(known, replies, strict=False):
                self._account(sid, reply, counts, again, gone)
            for sid, reply in zip(missing, replies[len(known) :], strict=True):
                if reply[0] is None:
                    gone.append(sid)
                else:
                    self._holdings[sid] = (reply[0], json.loads(reply[1]))
                    again.append(sid)
            if gone:
                for sid in gone:
                    self._holdings.pop(sid, None)
                cutoff_ms = int((self.now().timestamp() - INDEX_GRACE_S) * 1000)
                removed = await self._prune(keys=[keys.SESSION_INDEX], args=[cutoff_ms, *gone])
                counts["gone"] += int(removed)
            todo = again
            if not todo:
                return
        log.warning("%d sessions changed holdings during three passes; next tick", len(todo))

    def _account(
        self, sid: str, reply: Any, counts: dict[str, int], again: list[str], gone: list[str]
    ) -> None:
        if isinstance(reply, Exception):
            log.warning("revalue of %s failed: %s", sid, reply)
            return
        if isinstance(reply, list):  # ['hv', hv, holdings]: our cached holdings were old
            self._holdings[sid] = (reply[1], json.loads(reply[2]))
            again.append(sid)
            return
        counts["sessions"] += 1
        if isinstance(reply, int):
            counts["updated"] += 1
        elif reply == b"gone":
            counts["sessions"] -= 1
            gone.append(sid)
        else:  # 'same' or 'old'
            counts["unchanged"] += 1
