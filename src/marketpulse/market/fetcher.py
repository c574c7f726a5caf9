"""The seed's ``DataFetcher``: quotes and history through the fallback chain, cache and policy.

Guarantees:
- Providers are tried in order (``MARKETPULSE_DATA_SOURCE``, e.g. ``yahoo,nse,simulated``), each
  behind its ``GuardedProvider`` (rate limit, timeout, retries, breaker). A quote is validated
  against the symbol's last good quote before it is used, cached or returned; a rejected quote
  is logged and the next provider is tried.
- When every provider fails, the last good quote is returned flagged ``stale`` with ``age_s``;
  without one, ``QuoteUnavailable`` is raised.
- Exchange rates are quotes of pair symbols (``USDINR=X``, ``market/fx.py``) through the same
  chain. The chain of ``providers_for`` ends with the ECB reference rates (``ecb``), which only
  a pair symbol ever reaches (a stock's calls and their counts are as if it were absent): a
  dated rate served ``stale``, unless the last good quote is more recent, which is then served
  stale instead. A missing rate is ``QuoteUnavailable``, never 1:1.
- A batch never raises for one bad symbol: the symbol is absent from the result and the error
  logged.
- Live quotes are cached for the TTL; tick-source quotes only for the tick they were made at.
  A batch does one cache read and at most two pipelined writes.
- The cache is an optimisation: when its Redis fails or does not answer, the fetch goes to the
  providers uncached (no stale quote can then come from Redis, so when the providers fail too
  the error is theirs), the failure is counted and logged rate-limited, and the cache is
  bypassed for ``FetchPolicy.cache_retry_s`` (``market/best_effort.py``). A market tick that
  cannot be read is the last tick read (0 before any).
- Nothing blocks the loop: blocking providers run in their own bounded thread pools.
- Market hours (when the first provider is live and the fetcher has ``calendars``: the
  service's always, unless ``MARKETPULSE_MARKET_HOURS=false``; a fetcher given its providers
  only when given ``calendars``, so a library user or a test opts in): a symbol whose
  exchange is closed (``market/calendar.py``) costs no provider call once a quote of it was
  fetched ``FetchPolicy.closing_print_delay_s`` (300 s) or more after the last close; that
  quote (the closing print) is served, ``market_open`` false, not ``stale``; before the delay
  has passed the session's last quote is. So each close costs exactly one call per symbol
  (at least one: a failed one is tried again at the next fetch), and a closed day, weekend
  or holiday none.
  Every quote of a live provider says ``market_open``, ``session_date``, ``next_open`` and
  ``estimated`` for its symbol's exchange (None for a symbol without a calendar, which is
  never gated). A tick source keeps its own clock: with one first, nothing is gated.

  The gate is here, not in the monitor, because every live call passes here (the monitor's,
  ``GET /api/quotes``, the sessions' live market), and because here is the last good quote
  with the time it was fetched (in Redis: a new poller after a failover does not repeat the
  closing poll). The instant is the fetcher's ``wall`` clock, the one cache times use.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from marketpulse.config import Settings
from marketpulse.errors import MarketDataError, QuoteUnavailable, ValidationFailed
from marketpulse.market.best_effort import BestEffortRedis
from marketpulse.market.cache import CachedQuote, CacheLookup, CacheManager, aged
from marketpulse.market.clock import MarketClock, RedisTickClock, WallTickClock
from marketpulse.market.fx import parse_pair
from marketpulse.market.ports import QuoteProvider
from marketpulse.market.provider_guard import CallObserver, FetchPolicy, GuardedProvider
from marketpulse.market.providers.reference_rates import ReferenceRates
from marketpulse.market.quotes import Bar, StockData
from marketpulse.market.symbols import check_symbol
from marketpulse.market.validation import validate_quote

if TYPE_CHECKING:
    from marketpulse.infra.redis.client import RedisClient
    from marketpulse.market.calendar import Calendars, MarketState

log = logging.getLogger(__name__)


class FetchTelemetry(Protocol):
    """The part of ``services.telemetry.Telemetry`` the fetcher reports to."""

    def provider_call(self, provider: str, outcome: str, seconds: float) -> None: ...

    def cache(self, hit: bool) -> None: ...


class FetchCounters(CallObserver):
    """Simple counters for the metrics endpoint; forwards to telemetry when given one."""

    def __init__(self, telemetry: FetchTelemetry | None) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self.latency_sum_s: defaultdict[str, float] = defaultdict(float)
        self.stale_served = 0
        self.rejected = 0
        self.closed_served = 0  # quotes served without a call: their exchange is closed
        self._telemetry = telemetry

    def observe(self, provider: str, outcome: str, seconds: float) -> None:
        self.calls[(provider, outcome)] += 1
        self.latency_sum_s[provider] += seconds
        if self._telemetry is not None:
            self._telemetry.provider_call(provider, outcome, seconds)


def providers_for(settings: Settings) -> list[QuoteProvider]:
    """The fallback chain of ``settings.data_source`` (seed and replay settings applied), then
    the ECB reference rates, the last resort for exchange rates (pair symbols only)."""
    from marketpulse.market.providers import make_tick_source
    from marketpulse.market.providers.tick_provider import TickQuoteProvider

    chain: list[QuoteProvider] = []
    for name in settings.data_source:
        if name == "yahoo":  # imported only when used: yfinance (pandas) takes ~1.7 s to load
            from marketpulse.market.providers.yahoo import YahooProvider

            chain.append(YahooProvider(cache_dir=Path(settings.data_dir) / "yfinance"))
        elif name == "nse":
            from marketpulse.market.providers.nse import NseProvider

            chain.append(NseProvider())
        else:
            source = make_tick_source(
                name,
                seed=settings.seed,
                replay_start=settings.replay_start,
                replay_step=settings.replay_step,
            )
            chain.append(TickQuoteProvider(source))
    chain.append(ReferenceRates())
    return chain


def calendars_for(chain: Sequence[QuoteProvider]) -> Calendars | None:
    """The exchange calendars when the chain's first provider is live, else None (a tick
    source keeps its own clock); pandas_market_calendars is imported only then."""
    if not chain or not chain[0].live:
        return None
    from marketpulse.market.calendar import Calendars

    return Calendars()


class DataFetcher:
    """Quotes and daily history for any symbol; see the module docstring for guarantees.

    ``DataFetcher()`` follows the service's settings, read when it is built: the chain of
    ``MARKETPULSE_DATA_SOURCE`` (default the simulated market, ``MARKETPULSE_SEED``; replay
    settings apply), and a market that ticks every ``MARKETPULSE_MARKET_INTERVAL`` seconds
    from construction, with market hours per ``MARKETPULSE_MARKET_HOURS``. Given providers, it
    reads no settings (the clock then ticks every 5 s) and keeps no market hours unless given
    ``calendars`` (``market.calendar.Calendars()``). It caches nothing unless given a
    ``cache`` (the seed's monitor caches what it observes).
    """

    def __init__(
        self,
        providers: Sequence[QuoteProvider] | None = None,
        *,
        cache: CacheManager | None = None,
        clock: MarketClock | None = None,
        policy: FetchPolicy | None = None,
        telemetry: FetchTelemetry | None = None,
        wall: Callable[[], float] = time.time,
        calendars: Calendars | None = None,
    ) -> None:
        self.policy = policy or FetchPolicy()
        self.counters = FetchCounters(telemetry)
        interval_s = 5.0
        market_hours = False
        if providers is None:
            settings = Settings()  # read only when the caller gave no providers
            providers = providers_for(settings)
            interval_s = settings.market_interval
            market_hours = settings.market_hours
        chain = list(providers)
        if not chain:
            raise ValueError("DataFetcher needs at least one provider")
        self.guards = [GuardedProvider(p, self.policy, self.counters) for p in chain]
        self.cache = cache
        self.clock: MarketClock = clock or WallTickClock(interval_s)
        self.cache_guard = self._guard("quote cache")
        self.tick_guard = self._guard("market tick")
        self._last_tick = 0
        self._telemetry = telemetry
        self._wall = wall
        self._memory_last_good: dict[str, CachedQuote] = {}  # used only without a cache
        self._gate = asyncio.Semaphore(self.policy.max_concurrency)
        if calendars is None and market_hours:
            calendars = calendars_for(chain)
        self.calendars = calendars if self.live else None

    async def fetch_stock_data(self, symbol: str, *, tick: int | None = None) -> StockData:
        """The symbol's quote; raises ``ValidationFailed`` (invalid_symbol) or
        ``QuoteUnavailable``."""
        norm = check_symbol(symbol)
        found, errors = await self._fetch([norm], await self._tick(tick))
        if norm in found:
            return found[norm]
        raise errors[norm]

    async def fetch_batch_data(
        self, symbols: Sequence[str], *, tick: int | None = None
    ) -> dict[str, StockData]:
        """Quotes of the symbols that could be had (keyed as given, upper-cased)."""
        valid: list[str] = []
        for s in dict.fromkeys(symbols):
            try:
                valid.append(check_symbol(s))
            except ValidationFailed as exc:
                log.warning("batch symbol refused", extra={"symbol": s, "error": str(exc)})
        found, errors = await self._fetch(list(dict.fromkeys(valid)), await self._tick(tick))
        for s, error in errors.items():
            log.warning("quote unavailable", extra={"symbol": s, "error": str(error)})
        return found

    async def history(self, symbol: str, n: int = 253, *, tick: int | None = None) -> list[Bar]:
        """Up to ``n`` daily bars, oldest first, from the first provider that has them."""
        norm = check_symbol(symbol)
        at = await self._tick(tick)
        errors: list[str] = []
        for guard in self._chain(norm):
            try:
                return await guard.call(
                    "history", norm, partial(guard.provider.history, norm, at, n)
                )
            except MarketDataError as exc:
                errors.append(f"{guard.name}: {exc}")
        raise QuoteUnavailable(f"no history for {norm}: " + "; ".join(errors))

    @property
    def live(self) -> bool:
        """True when the first provider is live (quotes of now, not of a market tick)."""
        return self.guards[0].provider.live

    def may_quote(self, symbol: str) -> bool:
        """False only when no provider of the chain can have ``symbol``: every one is a tick
        source that does not know it (a live provider may have any symbol)."""
        for guard in self.guards:
            knows = getattr(guard.provider, "knows", None)
            if knows is None or knows(symbol):
                return True
        return False

    def provider_status(self) -> list[dict[str, object]]:
        """Per provider: name, circuit (closed/open/half_open), last_error, last_latency_ms,
        calls_ok, calls_failed."""
        return [g.status() for g in self.guards]

    def metrics(self) -> dict[str, object]:
        """Counters for the metrics endpoint."""
        return {
            "calls": {f"{p}:{o}": n for (p, o), n in sorted(self.counters.calls.items())},
            "latency_sum_s": dict(self.counters.latency_sum_s),
            "cache_hits": self.cache.hits if self.cache else 0,
            "cache_misses": self.cache.misses if self.cache else 0,
            "stale_served": self.counters.stale_served,
            "rejected": self.counters.rejected,
            "closed_served": self.counters.closed_served,
            "cache_errors": self.cache_guard.failures,
            "cache_bypassed": self.cache_guard.bypassed,
            "tick_errors": self.tick_guard.failures,
        }

    async def close(self) -> None:
        """Release the providers' sessions and thread pools."""
        for guard in self.guards:
            closer = getattr(guard.provider, "close", None)
            if closer is not None:
                await closer()

    def reference_rates(self) -> ReferenceRates | None:
        """The chain's offline reference rates (the last resort for a pair), for a market read
        by tick that asks its tick source first; closed with the fetcher."""
        for guard in self.guards:
            if isinstance(guard.provider, ReferenceRates):
                return guard.provider
        return None

    def _chain(self, symbol: str) -> list[GuardedProvider]:
        """The guards to try for ``symbol``: the reference rates only for a pair symbol."""
        if parse_pair(symbol) is not None:
            return self.guards
        return [g for g in self.guards if not isinstance(g.provider, ReferenceRates)]

    def _guard(self, what: str) -> BestEffortRedis:
        p = self.policy
        return BestEffortRedis(what, timeout_s=p.cache_timeout_s, retry_s=p.cache_retry_s,
                               log_every_s=p.outage_log_every_s, now=p.now)  # fmt: skip

    async def _tick(self, tick: int | None) -> int:
        if tick is not None:
            return tick
        read = await self.tick_guard.run("read", self.clock.tick)
        if read is not None:
            self._last_tick = read
        return self._last_tick

    async def _lookup(self, symbols: list[str], tick: int) -> dict[str, CacheLookup]:
        if self.cache is None:
            return {s: CacheLookup(None, self._memory_last_good.get(s)) for s in symbols}
        found = await self.cache_guard.run("read", partial(self.cache.lookup, symbols, tick=tick))
        if found is None:  # the cache is down: every symbol a miss, no last good quote
            return {s: CacheLookup(None, None) for s in symbols}
        if self._telemetry is not None:
            for hit in found.values():
                self._telemetry.cache(hit.fresh is not None)
        return found

    async def _fetch(
        self, symbols: list[str], tick: int
    ) -> tuple[dict[str, StockData], dict[str, MarketDataError]]:
        lookups = await self._lookup(symbols, tick)
        now = self._wall()
        states = self._market_states(symbols, now)
        found: dict[str, StockData] = {}
        todo: list[str] = []
        for s in symbols:
            state = states.get(s)
            if state is not None and not state.is_open:
                closing = served_closed(lookups[s], state, now, self.policy.closing_print_delay_s)
                if closing is not None:  # the close was polled already (or is settling)
                    self.counters.closed_served += 1
                    found[s] = with_market(aged(closing, now, stale=False), state)
                else:
                    todo.append(s)  # the one poll after the close (or a first quote)
                continue
            hit = lookups[s].fresh
            if hit is not None and not before_session(hit, state):
                found[s] = with_market(aged(hit, now, stale=False), state)
            else:
                todo.append(s)
        results = await asyncio.gather(
            *(self._from_chain(s, tick, lookups[s].last_good) for s in todo)
        )
        live: dict[str, StockData] = {}
        ticked: dict[str, StockData] = {}
        errors: dict[str, MarketDataError] = {}
        for s, (quote, is_live, error) in zip(todo, results, strict=True):
            if quote is None:
                errors[s] = error or QuoteUnavailable(f"no quote for {s}")
                continue
            if is_live:
                quote = with_market(quote, states.get(s))
            found[s] = quote
            if not quote.stale:
                (live if is_live else ticked)[s] = quote
        await self._remember(live, ticked, tick)
        return found, errors

    async def _from_chain(
        self, symbol: str, tick: int, last_good: CachedQuote | None
    ) -> tuple[StockData | None, bool, MarketDataError | None]:
        """(quote, from a live provider, error) for one symbol; never raises ours."""
        reasons: list[str] = []
        async with self._gate:
            for guard in self._chain(symbol):
                try:
                    quote = await guard.call(
                        "quote", symbol, partial(guard.provider.quote, symbol, tick)
                    )
                    validate_quote(quote, last_good.quote if last_good else None,
                                   self.policy.max_jump)  # fmt: skip
                except MarketDataError as exc:
                    if exc.code == "invalid_quote":
                        self.counters.rejected += 1
                        log.warning("quote rejected", extra={"symbol": symbol, "error": str(exc)})
                    reasons.append(f"{guard.name}: {exc}")
                    continue
                if quote.stale and last_good and last_good.quote.timestamp >= quote.timestamp:
                    break  # a dated reference rate older than the last good: serve that
                if quote.stale:
                    self.counters.stale_served += 1
                    log.warning("serving reference rate", extra={"symbol": symbol,
                                "source": guard.name, "reasons": reasons})  # fmt: skip
                return quote.model_copy(update={"symbol": symbol}), guard.provider.live, None
        if last_good is not None:
            self.counters.stale_served += 1
            log.warning("serving stale quote", extra={"symbol": symbol, "reasons": reasons})
            return aged(last_good, self._wall(), stale=True), True, None
        return None, True, QuoteUnavailable(f"no quote for {symbol}: " + "; ".join(reasons))

    def _market_states(self, symbols: list[str], now: float) -> dict[str, MarketState]:
        """Each symbol's exchange at ``now`` (none without calendars or a calendar)."""
        if self.calendars is None:
            return {}
        at = datetime.fromtimestamp(now, UTC)
        states: dict[str, MarketState] = {}
        for s in symbols:
            state = self.calendars.state(s, at)
            if state is not None:
                states[s] = state
        return states

    async def _remember(
        self, live: dict[str, StockData], ticked: dict[str, StockData], tick: int
    ) -> None:
        if self.cache is None:
            now = self._wall()
            for s, q in (live | ticked).items():
                self._memory_last_good[s] = CachedQuote(q, now)
            return
        cache = self.cache

        async def store(quotes: dict[str, StockData], at: int | None) -> bool:
            await cache.store(quotes, ttl=None, tick=at, last_good=True)
            return True

        if live:
            await self.cache_guard.run("write", partial(store, live, None))
        if ticked:
            await self.cache_guard.run("write", partial(store, ticked, tick))


def served_closed(
    found: CacheLookup, state: MarketState, now: float, delay_s: float
) -> CachedQuote | None:
    """The quote to serve without a call for a symbol of a closed exchange, or None: ask the
    providers (once: the closing print, or a first quote).

    The closing print is a quote fetched at least ``delay_s`` after the last close (the
    closing auction's price takes a moment to be published). Until then, a quote fetched
    during that session is served as it is; after it, the closing print is."""
    known = max(
        (q for q in (found.fresh, found.last_good) if q is not None),
        key=lambda q: q.fetched_at,
        default=None,
    )
    if known is None or state.last_close is None:
        return None
    due = state.last_close.timestamp() + delay_s
    if known.fetched_at >= due:
        return known  # the closing print
    if now < due and state.last_open is not None:
        return known if known.fetched_at >= state.last_open.timestamp() else None
    return None


def before_session(hit: CachedQuote, state: MarketState | None) -> bool:
    """Whether a cached quote was fetched before the session under way opened: it belongs to
    an earlier session, so the session's first fetch asks the providers."""
    if state is None or state.last_open is None:
        return False
    return hit.fetched_at < state.last_open.timestamp()


def with_market(quote: StockData, state: MarketState | None) -> StockData:
    """The quote as of ``state`` (its exchange when served); unchanged without one."""
    if state is None:
        return quote
    return quote.model_copy(
        update={
            "market_open": state.is_open,
            "session_date": state.session_date.isoformat() if state.session_date else None,
            "next_open": None if state.is_open else state.next_open,
            "estimated": state.estimated,
        }
    )


def build_fetcher(
    settings: Settings,
    redis: RedisClient,
    cache_redis: RedisClient | None,
    telemetry: FetchTelemetry | None = None,
) -> DataFetcher:
    """The service's fetcher: ``settings.data_source`` as the fallback chain, the cache in
    ``cache_redis`` (or ``redis``), the market tick from ``redis``, and for a live chain the
    exchange calendars (unless ``settings.market_hours`` is false)."""
    chain = providers_for(settings)
    cache = CacheManager(redis=cache_redis or redis, ttl=settings.cache_ttl)
    calendars = calendars_for(chain) if settings.market_hours else None
    return DataFetcher(chain, cache=cache, clock=RedisTickClock(redis), telemetry=telemetry,
                       calendars=calendars)  # fmt: skip
