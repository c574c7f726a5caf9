"""The analysis engine: starts runs, and runs the five metrics of one, pinned to a basis.

``analyze`` makes a run current and queues it on the run stream in one atomic step (see
runs.py); a run worker (worker.py, in this process or another) takes it and hands it to
``take``, with the basis read atomically when it was taken. The run computes the five results
once (on the engine's compute worker), waits each metric's modelled delay, timed from the run's
enqueue (up to a bound, see worker.py) and overlapping (the run takes the slowest, not the
sum), and appends each when it is due with the checked append of guarantee 2: a result computed
from a basis that has since moved is dropped and the run restarts as a new queued run from a
fresh atomic read (bounded; past the bound, ``unstable_basis``). Every run is a task held by
this engine, keyed by session: a switch cancels *and awaits* a superseded task held here (one
held elsewhere stops at its next append); ``shutdown`` cancels and awaits them all. A run whose
client disconnected keeps going to completion (its results land in the session state for the
next connect).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any, Protocol, TypeVar

from marketpulse.config import MetricDelay
from marketpulse.errors import FxUnavailable, MarketPulseError, RedisUnavailable
from marketpulse.market.view import Market
from marketpulse.sessions.metrics import METRIC_NAMES, compute_metric
from marketpulse.sessions.portfolio_inputs import (
    MarketStats,
    in_base_currency,
    inputs_from,
    market_stats,
)
from marketpulse.sessions.store import RunSnapshot, SessionStore
from marketpulse.sessions.watch import CommittedResult, PortfolioWatch
from marketpulse.timefmt import iso_z, utc_now

log = logging.getLogger(__name__)

# The Σ memo: at most this many entries, this many bytes (an entry of n tickers costs about
# _stats_cost: its n×n covariance and per-ticker momentum) and the latest STATS_TICKS ticks.
STATS_MEMO = 1024
STATS_MEMO_BYTES = 32 * 2**20
STATS_TICKS = 4
# The compute worker (``AnalysisEngine.compute``): an item with time to spare waits until no new
# item has arrived for COMPUTE_QUIET_S, and starts at the latest COMPUTE_LEAD_S before it is due.
COMPUTE_QUIET_S = 0.002
COMPUTE_LEAD_S = 0.05
T = TypeVar("T")
_COMMITTED = ("ok", "complete")  # append statuses of a result that was stored and published
_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)  # built once, not per dumps()


class AnalysisTelemetry(Protocol):
    def analysis_event(self, kind: str) -> None: ...

    def analysis_completed(self, seconds: float) -> None: ...


def new_run_id() -> str:
    return uuid.uuid4().hex


class AnalysisEngine:
    """Owns every analysis run of this instance."""

    def __init__(
        self,
        store: SessionStore,
        market: Market,
        *,
        delay: MetricDelay,
        max_restarts: int = 3,
        now: Callable[[], datetime] = utc_now,
        rng: random.Random | None = None,
        telemetry: AnalysisTelemetry | None = None,
        compute_quiet_s: float = COMPUTE_QUIET_S,
        compute_lead_s: float = COMPUTE_LEAD_S,
        watch: PortfolioWatch | None = None,
    ) -> None:
        self.store = store
        self.watch = watch  # told each committed result (portfolio metric alerts)
        self.market = market
        self.delay = delay
        self.max_restarts = max_restarts
        self.now = now
        self.rng = rng or random.Random()
        self.telemetry = telemetry
        self.runs: dict[str, asyncio.Task[None]] = {}
        self._stats_memo: OrderedDict[StatsKey, asyncio.Future[MarketStats]] = OrderedDict()
        self._stats_bytes = 0  # the memo's cost (_stats_cost of its keys)
        self._stats_tick = 0  # the newest tick memoised
        self._closing = False
        self.compute_quiet_s = compute_quiet_s
        self.compute_lead_s = compute_lead_s
        self._work: deque[tuple[Callable[[], Any], asyncio.Future[Any], float]] = deque()
        self._queued_at = -math.inf
        self._worker: asyncio.Task[None] | None = None
        self.took = asyncio.Event()  # set (then replaced) each time a run is taken (tests await it)

    def _event(self, kind: str) -> None:
        if self.telemetry is not None:
            self.telemetry.analysis_event(kind)

    async def analyze(self, session_id: str, token_hash: str, ticker: str) -> RunSnapshot:
        """Start analysing ``ticker``: the run is current and queued for a worker in one step. A
        no-op answering the running run if that ticker is already running and its run is alive;
        if its worker is gone, a fresh run takes over (``taken_over``). Raises SessionNotFound,
        NotInPortfolio."""
        snap = await self.store.start_analysis(
            session_id, token_hash, ticker, new_run_id(), iso_z(self.now())
        )
        if snap.already_running:
            return snap
        if snap.superseded_run_id is not None and not snap.taken_over:
            self._event("cancelled")
        self._event("restarted" if snap.taken_over else "started")
        await self._drop(session_id)  # a superseded run held here stops now
        return snap

    async def take(
        self, session_id: str, ticker: str, snap: RunSnapshot, begun: float
    ) -> asyncio.Task[None] | None:
        """Run ``snap`` (a worker took it from the stream: it was current when read), its
        metrics due from ``begun`` (loop time). A run of the same session still held here is
        superseded: cancelled and awaited first. The run's task, or None when shutting down.
        The task returns once the run has ended; it raises RedisUnavailable when the outcome is
        unknown (the run worker then resumes it once Redis answers, worker.py)."""
        while (held := self.runs.get(session_id)) is not None and not held.done():
            await self._drop(session_id)
        if self._closing:
            return None
        task = asyncio.get_running_loop().create_task(
            self._run(session_id, ticker, snap, begun), name=f"analysis:{session_id}:{ticker}"
        )
        self.runs[session_id] = task
        task.add_done_callback(lambda t: self._forget(session_id, t))
        self.took.set()
        self.took = asyncio.Event()
        return task

    async def cancel(self, session_id: str, token_hash: str) -> str | None:
        """Cancel the running analysis; the cancelled run id, or None if nothing ran."""
        run_id = await self.store.cancel_analysis(session_id, token_hash, iso_z(self.now()))
        if run_id is not None:
            self._event("cancelled")
            await self._drop(session_id)
        return run_id

    def _forget(self, session_id: str, task: asyncio.Task[None]) -> None:
        if self.runs.get(session_id) is task:
            del self.runs[session_id]
        exc = None if task.cancelled() else task.exception()
        if isinstance(exc, RedisUnavailable):  # an expected fault: the run worker's OutageLog
            log.debug("analysis run interrupted, resumed once Redis answers: %s", exc.message)
        elif exc is not None:
            log.error("analysis run failed", exc_info=exc)

    async def _drop(self, session_id: str) -> None:
        task = self.runs.pop(session_id, None)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def shutdown(self) -> None:
        """Cancel and await every run of this instance."""
        self._closing = True
        tasks = list(self.runs.values())
        worker, self._worker = self._worker, None
        if worker is not None:
            tasks.append(worker)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self.runs.clear()
        while self._work:
            self._work.popleft()[1].cancel()  # queued for a worker that is gone

    async def _run(self, session_id: str, ticker: str, snap: RunSnapshot, begun: float) -> None:
        """One run, to its end: complete, failed, superseded, or restarted (the restarted run
        is queued on the stream by the restart script, for whichever worker takes it)."""
        started = time.perf_counter()
        try:
            outcome = await self._attempt(session_id, ticker, snap, begun)
        except RedisUnavailable:
            raise  # unknown outcome: the run stays queued and is resumed
        except Exception:  # a bug: end the run with a reason rather than retry it forever
            log.exception("analysis of %s in %s failed", ticker, session_id)
            await self.store.fail_analysis(session_id, snap.run_id, "internal_error")
            self._event("failed")
            return
        if outcome == "complete":
            self._event("completed")
            if self.telemetry is not None:
                self.telemetry.analysis_completed(time.perf_counter() - started)
            return
        if outcome != "stale":
            return
        run = await self.store.restart_analysis(
            session_id, snap.run_id, new_run_id(), self.max_restarts, iso_z(self.now())
        )
        self._event("restarted" if isinstance(run, RunSnapshot) else "failed")

    async def _attempt(self, session_id: str, ticker: str, run: RunSnapshot, begun: float) -> str:
        """'complete' | 'stale' | 'over'. Each metric is due its modelled delay after ``begun``
        (the moment the run started): the real computation happens inside that delay, as the
        expensive analytics it models would."""
        # One task per run: the metrics' modelled delays overlap (the run takes the slowest of
        # them, not their sum), and metrics due at the same moment are appended by one script
        # run (each checked, versioned and published as if appended alone, one after another).
        lo, hi = self.delay.lo, self.delay.hi
        due = sorted((self.rng.uniform(lo, hi) if hi > 0 else 0.0, name) for name in METRIC_NAMES)
        # The five results are pure functions of the pinned basis: computed (and serialised) once,
        # before the first is due, so the moment a metric is due costs only its timestamp and the
        # checked append.
        try:
            stats = await self.stats(tuple(run.holdings), run.tick, conversion(run))
            heads = await self.compute(
                partial(_result_heads, ticker, run, stats), by=begun + due[0][0]
            )
        except RedisUnavailable:
            raise  # an unknown outcome, not a failed run: resumed once Redis answers
        except MarketPulseError as exc:
            log.warning("analysis of %s in %s cannot run: %s", ticker, session_id, exc.message)
            await self.store.fail_analysis(session_id, run.run_id, exc.code)
            self._event("failed")
            return "over"
        loop = asyncio.get_running_loop()
        while due:
            wait = begun + due[0][0] - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)  # the modelled cost of the analytics
            elapsed = loop.time() - begun
            ready = [d for d in due if d[0] <= elapsed]
            due = due[len(ready) :]
            stamp = f',"timestamp":"{iso_z(self.now())}"}}'
            bodies = [heads[name] + stamp for _, name in ready]
            statuses = await self.store.append_results(
                session_id,
                run.run_id,
                run.basis_version,
                [(f"{run.run_id}:{name}", b) for (_, name), b in zip(ready, bodies, strict=True)],
                len(METRIC_NAMES),
            )
            if self.watch is not None:
                committed = [b for b, s in zip(bodies, statuses, strict=True) if s in _COMMITTED]
                await self._tell(session_id, committed)
            if "superseded" in statuses or "gone" in statuses:
                return "over"  # wins over stale: a run that is no longer current never restarts
            if "stale" in statuses:
                return "stale"
        return "complete"

    async def _tell(self, session_id: str, bodies: list[str]) -> None:
        """The watcher's turn for committed results: its failure is logged, never the run's."""
        assert self.watch is not None
        for body in bodies:
            r = json.loads(body)
            result = CommittedResult(
                session_id, r["ticker"], r["metric"], r["value"], r.get("details") or {},
                r["id"], r["timestamp"],
            )  # fmt: skip
            try:
                await self.watch.result(result)
            except RedisUnavailable as exc:
                log.warning("portfolio alerts missed result %s: %s", r["id"], exc.message)
            except Exception:
                log.exception("portfolio alerts failed on result %s", r["id"])

    async def compute(self, fn: Callable[[], T], *, by: float | None = None) -> T:
        """``fn()`` (CPU work, no I/O), run by the engine's worker one item per event-loop
        iteration, in order, so the I/O that becomes ready meanwhile is not queued behind a
        whole burst of computations. ``by`` (loop time) is when the result is needed: an item
        with time to spare waits while new items keep arriving (a burst of runs starting
        together), so their starts and messages go first and the computing fills the quiet
        after; it waits no later than ``by - compute_lead_s``. A cancelled caller's item is
        skipped."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._queued_at = loop.time()
        self._work.append((fn, fut, -math.inf if by is None else by - self.compute_lead_s))
        if self._worker is None:
            self._worker = loop.create_task(self._drain(), name="analysis:compute")
        return await fut

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._work:
                fn, fut, latest = self._work[0]
                if fut.done():
                    self._work.popleft()
                    continue
                hold = min(self._queued_at + self.compute_quiet_s, latest) - loop.time()
                if hold > 0:
                    await asyncio.sleep(hold)  # a burst is still arriving; this one can wait
                    continue
                self._work.popleft()
                try:
                    fut.set_result(fn())
                except Exception as exc:  # the caller's to handle, raised where it awaits
                    fut.set_exception(exc)
                await asyncio.sleep(0)  # let ready I/O run before the next item
        finally:
            if self._worker is asyncio.current_task():
                self._worker = None

    async def stats(
        self, tickers: tuple[str, ...], tick: int, conversion: Conversion = ("", ())
    ) -> MarketStats:
        """Σ and momentum of the run's tickers at its tick in its base currency, shared by
        every run that holds the same tickers, in the same currencies, valued in the same base,
        at the same tick (a pure function of those, so a memo is exact). ``conversion`` is
        (base, each ticker's currency); ("", ()) reads the histories unconverted. Single
        flight: runs that start together await one computation; a failed one is not kept."""
        key = (tickers, tick, conversion)
        memo = self._stats_memo
        while True:
            fut = memo.get(key)
            if fut is None:
                return await self._compute_stats(key)
            try:
                return await asyncio.shield(fut)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if fut.cancelled() and task is not None and not task.cancelling():
                    continue  # the run computing it was cancelled, not this one: compute it here
                raise

    async def _compute_stats(self, key: StatsKey) -> MarketStats:
        memo = self._stats_memo
        self._unmemo(key)
        fut = memo[key] = asyncio.get_running_loop().create_future()
        self._stats_bytes += _stats_cost(key)
        self._stats_tick = max(self._stats_tick, key[1])
        self._trim_stats()
        try:
            stats = await self._market_stats(*key)
        except BaseException as exc:
            if memo.get(key) is fut:
                self._unmemo(key)
            if isinstance(exc, asyncio.CancelledError):
                fut.cancel()
            else:
                fut.set_exception(exc)
                fut.exception()  # marked retrieved: waiters, if any, re-raise it
            raise
        fut.set_result(stats)
        return stats

    def _unmemo(self, key: StatsKey) -> None:
        if self._stats_memo.pop(key, None) is not None:
            self._stats_bytes -= _stats_cost(key)

    def _trim_stats(self) -> None:
        """Evict the oldest entries while the memo is over its count or bytes, or while the
        oldest is more than STATS_TICKS ticks behind the newest (a run pinned to it recomputes)."""
        memo = self._stats_memo
        while memo:
            oldest = next(iter(memo))
            if (
                len(memo) <= STATS_MEMO
                and self._stats_bytes <= STATS_MEMO_BYTES
                and oldest[1] >= self._stats_tick - STATS_TICKS
            ):
                return
            self._unmemo(oldest)

    @property
    def stats_memo_bytes(self) -> int:
        """The Σ memo's estimated cost in bytes (at most STATS_MEMO_BYTES)."""
        return self._stats_bytes

    @property
    def stats_memo_entries(self) -> int:
        return len(self._stats_memo)

    async def _market_stats(
        self, tickers: tuple[str, ...], tick: int, conversion: Conversion
    ) -> MarketStats:
        """Σ and momentum from the histories converted into the base currency: each holding
        in another currency is joined with that currency's rate history (p × fx)."""
        histories = {s: list(h) for s, h in (await self.market.histories(tickers, tick)).items()}
        base, currencies = conversion
        for currency in sorted({c for c in currencies if c != base}):
            held = [t for t, c in zip(tickers, currencies, strict=True) if c == currency]
            until = max((histories[t][-1][0] for t in held if histories[t]), default=None)
            rates = await self.market.rate_history(currency, base, tick, until=until)
            for t in held:
                histories[t] = in_base_currency(histories[t], rates)
        return market_stats(tickers, histories)


def _stats_cost(key: StatsKey) -> int:
    """About what one memoised MarketStats of ``key``'s tickers costs: its covariance (n×n
    float64), its momentum map and the key, plus the entry and its future."""
    n = len(key[0])
    return 8 * n * n + 256 * n + 1024


StatsKey = tuple[tuple[str, ...], int, "Conversion"]
Conversion = tuple[str, tuple[str, ...]]
"""(base currency, each ticker's currency in holdings order)."""


def conversion(run: RunSnapshot) -> Conversion:
    base = run.base_currency
    return base, tuple(run.currencies.get(t, base) for t in run.holdings)


def prices_in_base(run: RunSnapshot) -> dict[str, float]:
    """The run's prices in its base currency (price × fx of the pinned basis). Raises
    FxUnavailable for a currency without a rate: never converted at 1:1."""
    fx = {run.base_currency: 1.0, **run.fx}
    base, currencies = conversion(run)
    missing = sorted({c for c in currencies if c not in fx})
    if missing:
        raise FxUnavailable(f"no exchange rate into {base} for {', '.join(missing)}")
    return {t: run.prices[t] * fx[c] for t, c in zip(run.holdings, currencies, strict=True)}


def _result_heads(ticker: str, run: RunSnapshot, stats: MarketStats) -> dict[str, str]:
    """Every metric's result head for the run (raises MarketPulseError when the inputs cannot
    be built)."""
    inputs = inputs_from(run.holdings, prices_in_base(run), stats)
    return {name: _result_head(ticker, run, inputs, name) for name in METRIC_NAMES}


def _result_head(ticker: str, run: RunSnapshot, inputs: Any, name: str) -> str:
    """The result message (docs/contracts.md) as JSON, less its ``timestamp`` and closing brace
    (added when the metric is done). Raises ValueError for a non-finite value (never sent as
    NaN)."""
    result = compute_metric(name, inputs, ticker)
    body: dict[str, Any] = {
        "ticker": ticker,
        "metric": name,
        "value": result.value,
        "run_id": run.run_id,
        "basis_version": run.basis_version,
        "id": f"{run.run_id}:{name}",
    }
    details = dict(result.details)
    base = run.base_currency
    details["base_currency"] = base
    currency = run.currencies.get(ticker, base)
    if currency != base:
        details["currency"] = currency
        details["fx_rate"] = run.fx.get(currency)
    if inputs.asynchronous:
        details["asynchronous_markets"] = True
    if result.reason is not None:
        details["reason"] = result.reason
    if details:
        body["details"] = details
    return _JSON.encode(body)[:-1]
