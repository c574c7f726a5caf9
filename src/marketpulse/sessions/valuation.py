"""The valuation loop: every interval, one leader advances the market tick and revalues every
session at that tick.

Guarantees: one leader across instances (a Redis lease); each session's revaluation is one
atomic step (a script call runs up to 100 sessions of one partition, one after the other, each
exactly as ``session_revalue.lua`` would) that never touches the TTL, never recreates an
expired session (it is skipped and dropped from the index) and bumps nothing when nothing
changed; a revaluation older than the stored one is refused (the tick fences a deposed
leader). The sweep walks each Redis node's partitions in parallel, pipelined in chunks, and
keeps a cache of each session's holdings keyed by the holdings version, so the steady state is
one script call per 100 sessions with each total computed here (money never goes through Lua
numbers).
That cache holds only the sessions the last completed sweep found in the index (a deleted
session is forgotten by the next sweep) and nothing while another instance leads.
A Redis outage skips ticks and is logged once when it starts and once when it ends
(``OutageLog("valuation")``, guarantee 10); the first sweep after it revalues every session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from marketpulse.errors import MarketDataError, RedisUnavailable
from marketpulse.infra.redis import keys
from marketpulse.infra.redis.lease import Lease
from marketpulse.infra.redis.outage import OutageLog
from marketpulse.market.clock import RedisTickClock
from marketpulse.market.view import FxRates, Market, Priced
from marketpulse.sessions.portfolio import canonical_map, canonical_prices
from marketpulse.sessions.store import (
    HoldingsAt,
    MoneyKey,
    RevalueItem,
    RevalueOutcome,
    SessionStore,
)
from marketpulse.sessions.watch import PortfolioWatch, ValuedSession
from marketpulse.timefmt import iso_z, utc_now

log = logging.getLogger(__name__)

CHUNK = 2000
INDEX_GRACE_S = 60.0  # a missing session indexed more recently may be mid-creation: kept
PARALLEL_CHUNKS = 3  # per Redis node
NO_FLAGS = "[]"
FX_STALE = '["fx_stale"]'
FX_UNAVAILABLE = '["fx_unavailable"]'
MISMATCH = '["currency_mismatch"]'


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
    """The sweep over ``store``; the tick is ``clock``'s (default: the shared one on the
    store's Redis), the leadership ``lease``'s."""

    def __init__(
        self,
        store: SessionStore,
        market: Market,
        *,
        interval_s: float,
        now: Callable[[], datetime] = utc_now,
        telemetry: SweepTelemetry | None = None,
        clock: RedisTickClock | None = None,
        lease: Lease | None = None,
        watch: PortfolioWatch | None = None,
    ) -> None:
        self.store = store
        self.market = market
        self.interval_s = interval_s
        self.now = now
        self.telemetry = telemetry
        self.clock = clock or RedisTickClock(store.redis)
        self.lease = lease or Lease(
            store.redis, keys.VALUATION_LEASE, ttl_s=max(3 * interval_s, 2.0)
        )
        self._holdings: dict[str, HoldingsAt] = {}
        self.watch = watch  # told each valued session (portfolio alerts), after it is stored
        self.last_report: SweepReport | None = None
        self.ticked = asyncio.Event()  # set after every sweep (tests await it)
        self.outage = OutageLog("valuation")
        self.url = store.redis.url

    @property
    def cached_sessions(self) -> int:
        """How many sessions' holdings the sweep keeps (bounded by the index)."""
        return len(self._holdings)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.cycle()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)
        with contextlib.suppress(RedisUnavailable):
            await self.lease.release()

    async def cycle(self) -> None:
        """One turn of the loop: a sweep if this instance leads. Its expected failures are
        reported, not raised: Redis not answering goes to ``outage`` (one line per outage), a
        market data error is logged."""
        try:
            if await self.lease.acquire():
                await self.run_once()
            else:
                self._holdings.clear()  # another instance sweeps: nothing kept for it here
        except* RedisUnavailable as group:  # the sweep's chunks run in a task group
            self.outage.failed(self.url, _first(group))
        except* MarketDataError as group:
            log.warning("revaluation skipped: %s", _first(group))
        else:
            self.outage.answered(self.url)

    async def run_once(self) -> SweepReport:
        """Advance the market one tick and revalue every session at it."""
        tick = await self.clock.advance()
        report = await self.sweep(tick)
        await self.clock.valued(tick, iso_z(self.now()))
        self.last_report = report
        if self.telemetry is not None:
            self.telemetry.sweep_observed(report.seconds, report.sessions)
            self.telemetry.set_active_sessions(report.sessions)
        self.ticked.set()
        self.ticked = asyncio.Event()
        return report

    async def sweep(self, tick: int) -> SweepReport:
        """Revalue every indexed session at ``tick``. The partitions of each Redis node (every
        primary of a cluster) are walked in parallel; on each, a few chunks at a time
        (``PARALLEL_CHUNKS``), so building one chunk here overlaps Redis executing the previous
        ones."""
        started = time.perf_counter()
        counts = {"sessions": 0, "updated": 0, "unchanged": 0, "gone": 0}
        valued_at = iso_z(self.now())
        seen: set[str] = set()

        async def one(ids: list[str], gate: asyncio.Semaphore) -> None:
            try:
                await self._sweep_chunk(ids, tick, valued_at, counts)
            finally:
                gate.release()

        async def walk(among: list[int]) -> None:
            gate = asyncio.Semaphore(PARALLEL_CHUNKS)
            async with asyncio.TaskGroup() as tg:
                async for page in self.store.indexed(CHUNK, among):
                    seen.update(page)
                    await gate.acquire()  # the next page is read while these run
                    tg.create_task(one(page, gate))

        async with asyncio.TaskGroup() as tg:
            for among in await self.store.partitions_by_node():
                tg.create_task(walk(among))
        for sid in self._holdings.keys() - seen:  # deleted (and unindexed) since the last sweep
            del self._holdings[sid]
        return SweepReport(tick=tick, seconds=time.perf_counter() - started, **counts)

    async def _sweep_chunk(
        self, ids: list[str], tick: int, valued_at: str, counts: dict[str, int]
    ) -> None:
        todo = ids
        cache = self._holdings
        for _ in range(3):  # a holdings change between reads sends a session round again
            missing, alike = _grouped(todo, cache)
            symbols = {t for key in alike for t in key[0]}
            priced = await self.market.priced(symbols, tick) if symbols else {}
            rates = await self._rates(alike, tick)
            items: list[RevalueItem] = []
            order: list[str] = []  # the cached sessions, grouped alike: the order of ``items``
            valued_of: list[_Valued] = []  # each item's shared valuation (the portfolio watcher)
            for key, sids in alike.items():
                valued = _valued(cache[sids[0]], priced, rates[key[1]])
                valued.revaluations(sids, cache, items)
                order += sids
                valued_of += [valued] * len(sids)
            outcomes, found = await self.store.revalue(tick, valued_at, items, missing)
            again: list[str] = []
            gone: list[str] = []
            for sid, outcome in zip(order, outcomes, strict=True):
                self._account(sid, outcome, counts, again, gone)
            if self.watch is not None:
                await self._tell(order, outcomes, valued_of, items, tick, valued_at)
            for sid, holdings_at in zip(missing, found, strict=True):
                if holdings_at is None:
                    gone.append(sid)
                else:
                    cache[sid] = holdings_at
                    again.append(sid)
            if gone:
                for sid in gone:
                    cache.pop(sid, None)
                cutoff_ms = int((self.now().timestamp() - INDEX_GRACE_S) * 1000)
                counts["gone"] += await self.store.unindex_gone(gone, cutoff_ms)
            todo = again
            if not todo:
                return
        log.warning("%d sessions changed holdings during three passes; next tick", len(todo))

    async def _rates(self, alike: Mapping[MoneyKey, object], tick: int) -> dict[str, FxRates]:
        """Per base currency, the rates of every currency those sessions hold into it (a pair
        no source has is listed as missing, not raised: only its sessions are flagged)."""
        wanted: dict[str, set[str]] = {}
        for _tickers, base, currencies in alike:
            wanted.setdefault(base, set()).update(c for _t, c in currencies)
        return {
            base: await self.market.rates(need, base, tick, strict=False)
            for base, need in wanted.items()
        }

    async def _tell(
        self,
        known: list[str],
        outcomes: list[RevalueOutcome],
        valued_of: list[_Valued],
        items: list[RevalueItem],
        tick: int,
        valued_at: str,
    ) -> None:
        """The watcher's turn (portfolio alerts) with the sessions valued (stored, or already
        so) at ``tick``: its failure is logged, never the sweep's."""
        assert self.watch is not None
        rows = [
            (sid, val, item[2])
            for sid, outcome, val, item in zip(known, outcomes, valued_of, items, strict=True)
            if outcome in ("updated", "unchanged") and sid in self._holdings
        ]
        if not rows:
            return
        try:
            wanted = await self.watch.watched([sid for sid, _, _ in rows])
            points = [
                point
                for (sid, val, total), want in zip(rows, wanted, strict=True)
                if want and (point := val.point(sid, self._holdings[sid], tick, valued_at, total))
            ]
            if points:
                await self.watch.valued(points)
        except RedisUnavailable as exc:
            log.warning("portfolio alerts skipped this tick: %s", exc.message)
        except Exception:
            log.exception("portfolio alerts failed on a sweep chunk")

    def _account(
        self,
        sid: str,
        outcome: RevalueOutcome,
        counts: dict[str, int],
        again: list[str],
        gone: list[str],
    ) -> None:
        if isinstance(outcome, RedisUnavailable):  # an error reply (say OOM), not an outage
            log.warning("revalue of %s failed: %s", sid, outcome)
        elif isinstance(outcome, HoldingsAt):  # our cached holdings were old
            self._holdings[sid] = outcome
            again.append(sid)
        elif outcome == "gone":
            gone.append(sid)
        else:
            counts["sessions"] += 1
            counts["updated" if outcome == "updated" else "unchanged"] += 1


@dataclass(frozen=True, slots=True)
class _Valued:
    """What every session with the same tickers, currencies and base shares at a tick: the
    prices text, each ticker's rate into the base, the rates text and the flags; or, when the
    valuation cannot be made, the flag that keeps the last good one (``fx_of`` None)."""

    prices_text: str
    prices: dict[str, float]
    fx_of: dict[str, float] | None
    fx_text: str
    flags_text: str

    def revaluations(
        self, sids: list[str], cache: Mapping[str, HoldingsAt], out: list[RevalueItem]
    ) -> None:
        """Append the revaluation of each of ``sids`` (sessions alike) to ``out``."""
        if self.fx_of is None:
            kept = (self.prices_text, "{}", self.flags_text)
            for sid in sids:
                out.append((sid, cache[sid].version, None, kept))
            return
        basis = (self.prices_text, self.fx_text, self.flags_text)
        fx_of, prices, fsum = self.fx_of, self.prices, math.fsum
        for sid in sids:
            at = cache[sid]
            # the same products as portfolio.total_in_base (q × price × fx), so the same cents
            total = round(fsum([q * prices[t] * fx_of[t] for t, q in at.holdings.items()]), 2)
            out.append((sid, at.version, total, basis))

    def point(
        self, sid: str, at: HoldingsAt, tick: int, valued_at: str, total: float | None
    ) -> ValuedSession | None:
        """What the portfolio watcher is told of this session's valuation (None: not valued)."""
        if self.fx_of is None or total is None:
            return None
        units = {t: self.prices[t] * self.fx_of[t] for t in at.holdings}
        return ValuedSession(
            sid, tick, valued_at, at.base_currency, dict(at.holdings), units, float(total)
        )


def _grouped(
    todo: list[str], cache: Mapping[str, HoldingsAt]
) -> tuple[list[str], dict[MoneyKey, list[str]]]:
    """The sessions not cached yet, and the cached ones grouped by what values them alike
    (computed once per group)."""
    missing: list[str] = []
    alike: dict[MoneyKey, list[str]] = {}
    for sid in todo:
        at = cache.get(sid)
        if at is None:
            missing.append(sid)
        elif (same := alike.get(at.money_key)) is None:
            alike[at.money_key] = [sid]
        else:
            same.append(sid)
    return missing, alike


def _valued(at: HoldingsAt, priced: Mapping[str, Priced], got: FxRates) -> _Valued:
    """The shared part of the revaluation of sessions like ``at``. A holding quoted in another
    currency than its own (a fallback source guessing) flags ``currency_mismatch``; a rate no
    source has flags ``fx_unavailable``: either keeps the last good valuation (never 1:1)."""
    base = at.base_currency
    tickers = at.holdings
    prices = {t: priced[t].price for t in tickers}
    prices_text = canonical_prices(prices)
    if any(priced[t].currency != at.currency(t) for t in tickers):
        return _Valued(prices_text, prices, None, "", MISMATCH)
    held = {at.currency(t) for t in tickers}
    if held & got.missing:
        return _Valued(prices_text, prices, None, "", FX_UNAVAILABLE)
    fx = {c: 1.0 if c == base else got.rates[c] for c in held}
    flags = FX_STALE if held & got.stale else NO_FLAGS
    fx_of = {t: fx[at.currency(t)] for t in tickers}
    return _Valued(prices_text, prices, fx_of, canonical_map({base: 1.0, **fx}), flags)


def _first(group: BaseExceptionGroup[Exception]) -> Exception:
    """The first leaf of an exception group."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    assert isinstance(exc, Exception)
    return exc
