"""The alert engine: the seed's ``AlertManager`` (``add_alert``, ``check_alerts``, ``notify``).

Guarantees:

- Each quote is evaluated through the per-symbol index (``domain.alert_index``): O(log n + changed).
- The fire decision is atomic and idempotent per observation in the store (a Lua script on
  Redis), so any number of instances evaluating the same observation fire an alert once.
- A stale or insane quote is ignored entirely (fires nothing, changes no state).
- On Redis, deliveries are at least once (docs/contracts.md, guarantee 11): the script that
  decides a fire queues it on the outbox and appends it to the history in the same step; the
  channels consume the outbox (``delivery.py``) in ``run_deliveries(stop)``, a task its owner
  runs (the app's lifespan, ``StockMonitor``), or in ``deliver_pending()`` calls. In memory the
  channels are sent to inline, in ``check_alerts``, as before.
- Either way notifications run concurrently, each under ``notify_timeout_s``; a failing channel
  is logged, never blocks the others, and is missing from the fire's ``deliveries`` (and
  ``channels``) in the history, which reads them when it is read.
- Each quote counts the alert conditions it was evaluated against and each fire decision won
  (``FIRED``) is counted once, through the injected ``AlertTelemetry`` (the app's metrics).
- ``AlertManager()`` keeps definitions, armed/fired state, volume windows and history in the
  Redis of the service's settings (``MARKETPULSE_REDIS_URL``, read when it is built; else
  ``redis://127.0.0.1:6379/0``), on a client it owns (``aclose()`` releases it);
  ``AlertManager(RedisAlertStore(redis), ...)`` on a client of yours. ``sync()`` picks up
  alerts added or removed by other instances. In process memory only when asked for:
  ``AlertManager.in_memory()`` (or ``store=MemoryAlertStore()``): nothing survives the process.
- Evaluated at once (docs/alerts.md, "a new alert is evaluated at once"): an alert added or
  changed here (``add_alert``), or picked up from another instance (``sync``), is evaluated
  against the latest known quote of its symbol (the ``quotes`` given, the quote cache) through
  the same store decision as a tick, at the observation the monitor last evaluated (its
  cursor; without a clock, the quote's time): a later tick at the same quote fires nothing
  more. Without ``quotes``, or when the quote cannot be had, it waits for the next tick.
- Rule alerts (issue 19; every alert that is not ``simple``: crossings, indicators, all_of,
  a re-arm margin, a snooze) are held next to the index, per symbol, and evaluated at each
  usable quote of their symbol with ``rules.evaluate``; one is applied to the store only when
  its tri-state (true / false-and-rearm / false-within-margin) differs from the last one this
  instance applied (after ``forget()`` every one is applied once again), as the index reports
  only changes. Indicator values come from the ``IndicatorSource`` given (``indicators``,
  ``alerts/indicator_feed.py`` in the app), told which specs each symbol's alerts want;
  without one, an alert needing an indicator has no value and does nothing. A snoozed alert's
  fire is muted: recorded in history, never delivered.
- On Redis, ``subscribe()`` goes through the instance's pub/sub hub
  (``RedisClient.subscription``), whose loop (``RedisClient.run``) the app's lifespan runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

from marketpulse.alerts.channels import routed
from marketpulse.alerts.delivery import MAX_ATTEMPTS, OutboxDelivery
from marketpulse.alerts.event import FiredAlert
from marketpulse.alerts.index import AlertIndex, Change
from marketpulse.alerts.memory_store import MemoryAlertStore
from marketpulse.alerts.notifiers import ConsoleNotifier, Notifier
from marketpulse.alerts.outbox import AlertOutbox
from marketpulse.alerts.rules import (
    AlertCondition,
    AlertState,
    AlertType,
    Evaluation,
    Indicator,
    IndicatorValues,
    Outcome,
    evaluate,
    holds,
    observed_value,
    snoozed,
    usable,
)
from marketpulse.alerts.split_guard import SplitGuard
from marketpulse.alerts.store import AlertStore, RedisAlertStore
from marketpulse.config import Settings
from marketpulse.errors import LimitReached, MarketPulseError
from marketpulse.infra.redis import keys
from marketpulse.infra.redis.client import RedisClient
from marketpulse.infra.redis.pubsub import Subscription
from marketpulse.market.quotes import StockData
from marketpulse.timefmt import utc_now

log = logging.getLogger(__name__)

APPLY_CONCURRENCY = 16


class AlertTelemetry(Protocol):
    """Where the engine reports its work (``services.telemetry.Telemetry`` in the app)."""

    def alert_evaluated(self, n: int = 1) -> None: ...

    def alert_fired(self, n: int = 1) -> None: ...


@runtime_checkable
class LatestQuotes(Protocol):
    """The latest known quote of a symbol, or None (``market.cache.CacheManager`` in the app;
    raises ``MarketPulseError`` when it cannot be read)."""

    async def latest(self, symbol: str) -> StockData | None: ...


class IndicatorSource(Protocol):
    """Indicator values per symbol (``alerts/indicator_feed.IndicatorFeed`` in the app).

    ``want(symbol, specs)``: the specs ``symbol``'s alerts observe, all of them (the engine
    calls it whenever they change); ``drop(symbol)``: it has none any more (its state goes).
    ``observe(quote)``: the quote as its symbol's live bar; the values, or None (no history
    yet). ``rebase(symbol, ratio)``: a split of ``ratio`` took effect (the split guard).
    The engine calls ``observe`` once per usable quote of a symbol with indicator alerts, in
    order (under the symbol's lock)."""

    def want(self, symbol: str, specs: Sequence[Indicator]) -> None: ...

    def drop(self, symbol: str) -> None: ...

    async def observe(self, quote: StockData) -> IndicatorValues | None: ...

    def rebase(self, symbol: str, ratio: float) -> None: ...


# the types a quote alone decides: a volume spike needs its window, kept by the ticks
AT_ONCE_TYPES = frozenset(
    {AlertType.PRICE_THRESHOLD, AlertType.PERCENTAGE_CHANGE, AlertType.INDICATOR, AlertType.ALL_OF}
)


def _epoch(at: datetime | None) -> float | None:
    return None if at is None else at.timestamp()


def state_text(alert: AlertCondition, state: AlertState | None, ev: Evaluation | None) -> str:
    """The alert's state in words: ``armed, RSI(14) 41.2`` / ``fired, price 151``
    (``disarmed`` for a crossing not yet seen false)."""
    if state is None:
        word = "unknown"
    elif state.armed:
        word = "armed"
    else:
        word = "fired" if state.last_fired_at is not None else "disarmed"
    if ev is not None and ev.values:
        shown = ", ".join(
            f"{label} {'none' if v is None else f'{v:.4g}'}" for label, v in ev.values
        )
        word = f"{word}, {shown}"
    return word


def observation_of(quote: StockData) -> int:
    """Observation key of a quote without a market tick: its timestamp in microseconds."""
    return int(quote.timestamp.timestamp() * 1_000_000)


class AlertManager:
    def __init__(
        self,
        store: AlertStore | None = None,
        notifiers: Sequence[Notifier] | None = None,
        *,
        redis: RedisClient | None = None,
        notify_timeout_s: float = 10.0,
        telemetry: AlertTelemetry | None = None,
        reclaim_s: float | None = None,
        delivery_attempts: int | None = None,
        max_alerts: int = 0,
        quotes: LatestQuotes | None = None,
        indicators: IndicatorSource | None = None,
    ) -> None:
        self.quotes = quotes  # the latest quotes a new alert is evaluated against at once
        self.indicators = indicators  # indicator values of rule alerts (None: they have none)
        self._owned: RedisClient | None = None
        if store is None:
            if redis is None:
                settings = Settings()
                redis = self._owned = RedisClient.from_url(settings.client_redis_url())
                reclaim_s = settings.alert_reclaim_s if reclaim_s is None else reclaim_s
                if delivery_attempts is None:
                    delivery_attempts = settings.alert_delivery_attempts
            store = RedisAlertStore(redis)
        self.store: AlertStore = store
        self.notifiers: list[Notifier] = (
            list(notifiers) if notifiers is not None else [ConsoleNotifier()]
        )
        if redis is None and isinstance(self.store, RedisAlertStore):
            redis = self.store.redis
        self._redis = redis
        self.url: str | None = (
            self.store.url if isinstance(self.store, RedisAlertStore) else None
        )  # where the store's Redis is, for the monitor's outage log
        self._notify_timeout_s = notify_timeout_s
        self.max_alerts = max_alerts  # 0: no cap
        self._telemetry = telemetry
        self._index = AlertIndex()
        # rule alerts (not ``simple``): symbol -> id -> alert, and id -> the tri-state this
        # instance last applied; both bounded by the alerts, an entry leaves with its alert
        self._rules: dict[str, dict[str, AlertCondition]] = {}
        self._rule_symbol: dict[str, str] = {}
        self._rule_tri: dict[str, str] = {}
        # issue 19: a confirmed split re-bases the symbol's alerts before its quote is evaluated
        self.splits = SplitGuard(
            self.store, get=self._get, hold=self._hold, rederive=self._rederive
        )
        if indicators is not None:
            self.use_indicators(indicators)
        self._version = -1
        self._locks: dict[str, asyncio.Lock] = {}  # symbol -> its lock, while in use
        self._lock_users: dict[str, int] = {}  # symbol -> holders and waiters of its lock
        self._local: set[asyncio.Queue[str]] = set()
        # on Redis the channels consume the outbox; in memory they are sent to inline
        self.delivery: OutboxDelivery | None = None
        self._groups_ready = False
        if isinstance(self.store, RedisAlertStore):
            self.delivery = OutboxDelivery(
                AlertOutbox(self.store.redis),
                self.notifiers,
                reclaim_s=10.0 if reclaim_s is None else reclaim_s,
                max_attempts=MAX_ATTEMPTS if delivery_attempts is None else delivery_attempts,
                notify_timeout_s=notify_timeout_s,
            )
        # issue 20: called with a "cleared" FiredAlert when an alert re-arms (on Redis)
        self.on_rearmed: Callable[[FiredAlert], Awaitable[None]] | None = None

    @classmethod
    def in_memory(cls, notifiers: Sequence[Notifier] | None = None) -> AlertManager:
        """Conditions, state and history in this process only (gone when it exits)."""
        return cls(MemoryAlertStore(), notifiers)

    async def aclose(self) -> None:
        """Release the Redis client ``AlertManager()`` built (a no-op otherwise). It reconnects
        if the manager is used again."""
        if self._owned is not None:
            await self._owned.aclose()

    # -- definitions -------------------------------------------------------------------------

    async def add_alert(self, condition: AlertCondition) -> AlertCondition:
        """Store and index ``condition``, then evaluate it at once against the latest known
        quote of its symbol (see the module docstring); it fires then if already true. Raises
        ``LimitReached`` (``too_many_alerts``) for a new condition past ``max_alerts``."""
        if not await self.store.add(condition, cap=self.max_alerts):
            raise LimitReached(
                f"at most {self.max_alerts} alert conditions; delete one first", "too_many_alerts"
            )
        self._hold(condition)
        await self.evaluate_now([condition])
        return condition

    async def edit_alert(self, condition: AlertCondition) -> bool:
        """Replace the existing alert of ``condition.id`` and reset its state as a new one's
        (a crossing starts disarmed again), then evaluate it at once; False if there is none."""
        await self.sync()
        if self._get(condition.id) is None and condition.id not in {
            a.id for a in await self.store.all()
        }:
            return False
        await self.store.add(condition, reset=True)
        self._hold(condition)
        await self.evaluate_now([condition])
        return True

    async def snooze(self, alert_id: str, until: datetime | None) -> AlertCondition | None:
        """Snooze ``alert_id`` until ``until`` (None: end the snooze); its state is kept. The
        alert as stored now, or None if there is none."""
        await self.sync()
        alert = self._get(alert_id)
        if alert is None:
            return None
        changed = alert.model_copy(update={"snoozed_until": until})
        await self.store.add(changed)
        self._hold(changed)
        return changed

    async def remove_alert(self, alert_id: str) -> bool:
        self._release(alert_id)
        return await self.store.remove(alert_id)

    async def list_alerts(self) -> list[AlertCondition]:
        await self.sync()
        return sorted(self._alerts(), key=lambda a: (a.symbol, a.id))

    async def get_alert(self, alert_id: str) -> AlertCondition | None:
        await self.sync()
        return self._get(alert_id)

    async def alert_states(
        self, alerts: Sequence[AlertCondition]
    ) -> dict[str, tuple[AlertState | None, Evaluation | None]]:
        """Each alert's stored state and its evaluation at the latest known quote of its
        symbol (None without one; a volume spike has no value here: its window is the
        ticks'). Best effort: a quote or indicator that cannot be had leaves it None."""
        states = await self.store.states([a.id for a in alerts])
        latest: dict[str, StockData | None] = {}
        books: dict[str, IndicatorValues | None] = {}
        out: dict[str, tuple[AlertState | None, Evaluation | None]] = {}
        for alert in alerts:
            ev: Evaluation | None = None
            if self.quotes is not None:
                try:
                    if alert.symbol not in latest:
                        latest[alert.symbol] = await self.quotes.latest(alert.symbol)
                    quote = latest[alert.symbol]
                    if quote is not None and usable(quote):
                        if alert.indicators() and alert.symbol not in books:
                            books[alert.symbol] = await self._indicator_values(quote)
                        ind = books.get(alert.symbol)
                        ev = evaluate(alert, quote, volumes=(), indicators=ind)
                except MarketPulseError as exc:
                    log.info("alert state of %s without values: %s", alert.id, exc.message)
            out[alert.id] = (states.get(alert.id), ev)
        return out

    async def sync(self) -> None:
        """Bring the index in line with the store if its version moved (cheap when it did not)."""
        version = await self.store.version()
        if version == self._version:
            return
        stored = {a.id: a for a in await self.store.all()}
        for alert in self._alerts():
            if alert.id not in stored:
                self._release(alert.id)
        # the first sync evaluates every alert (those added before a quote source was given,
        # or while no monitor ran); later ones, the alerts added or changed elsewhere
        picked = list(stored.values()) if self._version == -1 else []
        for alert_id, alert in stored.items():
            if self._get(alert_id) != alert:
                self._hold(alert)
                if self._version != -1:
                    picked.append(alert)
        self._version = version
        await self.evaluate_now(picked)

    def _hold(self, alert: AlertCondition) -> None:
        """Hold ``alert`` where it is evaluated: the index (simple) or the rule alerts."""
        self._release(alert.id)
        if alert.simple:
            self._index.add(alert)
            return
        self._rules.setdefault(alert.symbol, {})[alert.id] = alert
        self._rule_symbol[alert.id] = alert.symbol
        if alert.indicators():
            self._want(alert.symbol)

    def _release(self, alert_id: str) -> None:
        self._index.remove(alert_id)
        self._rule_tri.pop(alert_id, None)
        symbol = self._rule_symbol.pop(alert_id, None)
        if symbol is None:
            return
        held = self._rules[symbol]
        gone = held.pop(alert_id)
        if not held:
            del self._rules[symbol]
        if gone.indicators():
            self._want(symbol)

    def _want(self, symbol: str) -> None:
        """Tell the indicator source the specs ``symbol``'s rule alerts observe now."""
        if self.indicators is None:
            return
        specs = [s for a in self._rules.get(symbol, {}).values() for s in a.indicators()]
        if specs:
            self.indicators.want(symbol, specs)
        else:
            self.indicators.drop(symbol)

    def _get(self, alert_id: str) -> AlertCondition | None:
        symbol = self._rule_symbol.get(alert_id)
        if symbol is not None:
            return self._rules[symbol][alert_id]
        return self._index.get(alert_id)

    def _alerts(self) -> list[AlertCondition]:
        return [*self._index.alerts(), *(a for held in self._rules.values() for a in held.values())]

    async def _indicator_values(self, quote: StockData) -> IndicatorValues | None:
        if self.indicators is None:
            return None
        return await self.indicators.observe(quote)

    async def evaluate_now(self, alerts: Sequence[AlertCondition]) -> list[FiredAlert]:
        """Evaluate ``alerts`` against the latest known quote of their symbols, through the
        store's fire decision (at the monitor's cursor, else the quote's time); the fires.

        Only a true condition is applied (a false one is left to the next tick); a volume
        spike waits for the next tick (its window is the ticks'). Best effort: a quote or a
        store that cannot be had is logged and the alerts wait for the next tick."""
        if self.quotes is None:
            return []
        wanted = [a for a in alerts if a.alert_type in AT_ONCE_TYPES and not a.crossing]
        if not wanted:
            return []
        try:
            return await self._evaluate_now(self.quotes, wanted)
        except MarketPulseError as exc:
            log.warning("new alerts not evaluated at once (the next tick will): %s", exc.message)
            return []

    async def _evaluate_now(
        self, quotes: LatestQuotes, alerts: list[AlertCondition]
    ) -> list[FiredAlert]:
        cursor = await self.store.cursor()
        latest: dict[str, StockData | None] = {}
        fired: list[FiredAlert] = []
        for alert in alerts:
            if alert.symbol not in latest:
                latest[alert.symbol] = await quotes.latest(alert.symbol)
            quote = latest[alert.symbol]
            if quote is None or not usable(quote):
                continue
            if alert.simple:
                value = observed_value(alert.alert_type, quote)
                ev = None if value is None else Evaluation(holds(alert, value), False, value)
            else:  # an all_of with a volume spike has no value here: the ticks decide it
                ind = await self._indicator_values(quote) if alert.indicators() else None
                ev = evaluate(alert, quote, volumes=(), indicators=ind)
            if self._telemetry is not None and ev is not None:
                self._telemetry.alert_evaluated()
            if ev is None or not ev.truth:
                continue
            obs = observation_of(quote) if cursor is None else cursor
            if self.delivery is not None:  # every channel's group exists before a fire
                await self._ensure_groups(self.delivery)
            at = quote.timestamp.timestamp()
            muted = snoozed(at, _epoch(alert.snoozed_until))
            evaluated = None if alert.simple else ev
            candidate = FiredAlert.of(alert, ev.value, quote, obs, ev=evaluated, muted=muted)
            outcome = await self.store.apply(alert, obs=obs, truth=True, at=at, fired=candidate)
            if outcome is not Outcome.FIRED:
                continue
            if self._telemetry is not None:
                self._telemetry.alert_fired()
            log.info("alert %s fired at once: %s", alert.id, alert.symbol)
            inline = self.delivery is None and not candidate.muted
            fired.append(await self._deliver_inline(candidate) if inline else candidate)
        return fired

    def use_indicators(self, indicators: IndicatorSource) -> None:
        """Take indicator values from ``indicators`` from now on (``StockMonitor`` gives its
        fetcher's when the manager has none): it is told the specs held and re-based by
        splits."""
        self.indicators = indicators
        self.splits.on_split.append(indicators.rebase)
        for symbol in list(self._rules):
            self._want(symbol)

    def _rederive(self, symbol: str) -> None:
        """Re-derive the truths of ``symbol``'s alerts at its next observation."""
        self._index.forget(symbol)
        for alert_id in self._rules.get(symbol, {}):
            self._rule_tri.pop(alert_id, None)

    def forget(self) -> None:
        """Re-derive every alert's truth at its next observation (after a gap in what this
        instance observed: a new poller, a restart); the store's state is then corrected."""
        self._index.forget()
        self._rule_tri.clear()

    async def history(self, symbol: str | None = None, limit: int = 50) -> list[FiredAlert]:
        """Fired alerts, newest first, each with the channels that delivered it and when."""
        return await self.store.history(symbol, limit)

    # -- delivery ----------------------------------------------------------------------------

    async def run_deliveries(self, stop: asyncio.Event) -> None:
        """Deliver the outbox on this manager's channels until ``stop`` (a task its owner
        runs; see ``delivery.py``). In memory there is nothing to consume: it waits for
        ``stop``."""
        if self.delivery is None:
            await stop.wait()
            return
        await self.delivery.run(stop)

    async def deliver_pending(self, block_ms: int | None = None) -> int:
        """Deliver what the outbox holds for this manager's channels now (new fires, and
        failed ones idle past the reclaim bound), waiting up to ``block_ms`` for a new one;
        the number of deliveries made. For a caller that runs no ``run_deliveries`` loop; in
        memory a no-op (0)."""
        if self.delivery is None:
            return 0
        await self._ensure_groups(self.delivery)
        return await self.delivery.run_once(block_ms)

    async def _ensure_groups(self, delivery: OutboxDelivery) -> None:
        if not self._groups_ready:
            await delivery.ensure_groups()
            self._groups_ready = True

    # -- evaluation --------------------------------------------------------------------------

    async def check_alerts(
        self, stock_data: StockData, *, obs: int | None = None
    ) -> list[FiredAlert]:
        """Evaluate one quote; return the alerts it fired (each ``id`` is its fire id).

        On Redis each returned fire is decided, recorded in the history and queued for
        delivery, atomically; it is delivered afterwards, on every channel at least once, by
        ``run_deliveries`` (or ``deliver_pending``), so its ``channels`` are empty here and the
        history reports them once delivered. In memory the fires are delivered before this
        returns and carry their ``channels`` and ``deliveries``.

        ``obs`` orders observations (the market tick); by default the quote's time in µs.
        Observations of one symbol must arrive in increasing order.
        """
        quote = stock_data
        if not usable(quote):
            return []
        obs = observation_of(quote) if obs is None else obs
        sym = quote.symbol
        lock = self._locks.setdefault(sym, asyncio.Lock())
        self._lock_users[sym] = self._lock_users.get(sym, 0) + 1
        try:
            async with lock:
                quote = await self.splits.before(quote, obs)  # a confirmed split re-based
                values, prior = await self._values(quote, obs)
                if self._telemetry is not None:
                    self._count_evaluated(self._telemetry, sym, values)
                changes = self._index.observe(sym, values)
                rules = self._rules.get(sym)
                ruled = await self._rule_changes(quote, prior, rules) if rules else []
                if not changes and not ruled:
                    return []
                if self.delivery is not None:  # every channel's group exists before a fire
                    await self._ensure_groups(self.delivery)
                fired = await self._apply(quote, obs, values, changes) if changes else []
                if ruled:
                    fired += await self._apply_rules(quote, obs, ruled)
                return fired
        finally:  # the last user drops the symbol's lock: none kept for symbols gone quiet
            users = self._lock_users.pop(sym) - 1
            if users:
                self._lock_users[sym] = users
            else:
                del self._locks[sym]

    async def _values(
        self, quote: StockData, obs: int
    ) -> tuple[dict[AlertType, float | None], list[int]]:
        sym, index = quote.symbol, self._index
        values: dict[AlertType, float | None] = {}
        if index.wants(sym, AlertType.PRICE_THRESHOLD):
            values[AlertType.PRICE_THRESHOLD] = quote.price
        if index.wants(sym, AlertType.PERCENTAGE_CHANGE):
            values[AlertType.PERCENTAGE_CHANGE] = observed_value(AlertType.PERCENTAGE_CHANGE, quote)
        # the window is kept for every observed symbol, so a volume alert added later has one
        prior = await self.store.volumes(sym, obs=obs, volume=quote.volume)
        if index.wants(sym, AlertType.VOLUME_SPIKE):
            values[AlertType.VOLUME_SPIKE] = observed_value(AlertType.VOLUME_SPIKE, quote, prior)
        return values, prior

    async def _rule_changes(
        self, quote: StockData, prior: list[int], rules: dict[str, AlertCondition]
    ) -> list[tuple[AlertCondition, Evaluation]]:
        """The rule alerts of ``quote``'s symbol whose tri-state differs from the last one
        this instance applied, with their evaluation (an alert without a value: none)."""
        held = list(rules.values())
        ind = None
        if self.indicators is not None and any(a.indicators() for a in held):
            ind = await self.indicators.observe(quote)
        out: list[tuple[AlertCondition, Evaluation]] = []
        for alert in held:
            ev = evaluate(alert, quote, volumes=prior, indicators=ind)
            if ev is None:
                continue
            if self._telemetry is not None:
                self._telemetry.alert_evaluated()
            if self._rule_tri.get(alert.id) != ev.tri:
                out.append((alert, ev))
        return out

    async def _apply_rules(
        self, quote: StockData, obs: int, ruled: list[tuple[AlertCondition, Evaluation]]
    ) -> list[FiredAlert]:
        at = quote.timestamp.timestamp()
        fired: list[FiredAlert] = []
        gate = asyncio.Semaphore(APPLY_CONCURRENCY)

        async def one(alert: AlertCondition, ev: Evaluation) -> None:
            candidate: FiredAlert | None = None
            if ev.truth:
                muted = snoozed(at, _epoch(alert.snoozed_until))
                candidate = FiredAlert.of(alert, ev.value, quote, obs, ev=ev, muted=muted)
            async with gate:
                outcome = await self.store.apply(
                    alert, obs=obs, truth=ev.truth, at=at, fired=candidate, rearm=ev.rearm
                )
            if self._rule_symbol.get(alert.id) is not None and self._get(alert.id) == alert:
                self._rule_tri[alert.id] = ev.tri  # applied (unless changed meanwhile)
            if outcome is Outcome.FIRED:
                assert candidate is not None
                if self._telemetry is not None:
                    self._telemetry.alert_fired()
                if self.delivery is None and not candidate.muted:
                    candidate = await self._deliver_inline(candidate)
                fired.append(candidate)
            elif outcome in (Outcome.EXPIRED, Outcome.GONE):
                await self.remove_alert(alert.id)

        async with asyncio.TaskGroup() as tg:
            for alert, ev in ruled:
                tg.create_task(one(alert, ev))
        return fired

    def _count_evaluated(
        self, telemetry: AlertTelemetry, symbol: str, values: dict[AlertType, float | None]
    ) -> None:
        """Conditions of ``symbol`` whose observed value this quote had (None: no baseline)."""
        n = sum(self._index.watching(symbol, t) for t, v in values.items() if v is not None)
        if n:
            telemetry.alert_evaluated(n)

    async def _apply(
        self,
        quote: StockData,
        obs: int,
        values: dict[AlertType, float | None],
        changes: list[Change],
    ) -> list[FiredAlert]:
        at = quote.timestamp.timestamp()
        fired: list[FiredAlert] = []
        gate = asyncio.Semaphore(APPLY_CONCURRENCY)

        async def one(change: Change) -> None:
            alert = self._index.get(change.alert_id)
            if alert is None:
                return
            candidate: FiredAlert | None = None
            if change.became_true:  # what fires, if the store decides it does
                value = values[alert.alert_type]
                assert value is not None  # a change implies a value
                candidate = FiredAlert.of(alert, value, quote, obs)
            async with gate:
                outcome = await self.store.apply(
                    alert, obs=obs, truth=change.became_true, at=at, fired=candidate
                )
            if outcome is Outcome.FIRED:
                assert candidate is not None
                if self._telemetry is not None:
                    self._telemetry.alert_fired()
                if self.delivery is None:
                    candidate = await self._deliver_inline(candidate)
                fired.append(candidate)
            elif outcome in (Outcome.EXPIRED, Outcome.GONE):
                await self.remove_alert(alert.id)
            elif outcome is Outcome.REARMED and self.on_rearmed is not None:
                await self._rearmed(self.on_rearmed, alert, values[alert.alert_type], quote, obs)

        async with asyncio.TaskGroup() as tg:
            for change in changes:
                tg.create_task(one(change))
        return fired

    async def _rearmed(
        self,
        hook: Callable[[FiredAlert], Awaitable[None]],
        alert: AlertCondition,
        value: float | None,
        quote: StockData,
        obs: int,
    ) -> None:
        """Issue 20's "back to normal": hand the hook the alert's clearing (best effort)."""
        if value is None:
            return
        cleared = FiredAlert.of(alert, value, quote, obs).model_copy(update={"kind": "cleared"})
        try:
            await hook(cleared)
        except MarketPulseError as exc:
            log.warning("alert %s back to normal, not queued: %s", alert.id, exc.message)

    async def _deliver_inline(self, alert: FiredAlert) -> FiredAlert:
        """The in-memory path: send on every channel now, record who delivered."""
        at = utc_now()
        channels = await self.notify(alert)
        try:
            for channel in channels:
                await self.store.record_delivery(alert.id, channel, at)
        except MarketPulseError as exc:
            log.error("alert %s delivered but not recorded: %s", alert.id, exc.message)
        return alert.delivered(dict.fromkeys(channels, at))

    async def notify(self, alert: FiredAlert) -> list[str]:
        """Send ``alert`` on every channel concurrently; return the names that delivered."""
        delivered: set[str] = set()

        async def one(notifier: Notifier) -> None:
            try:
                async with asyncio.timeout(self._notify_timeout_s):
                    await notifier.send(alert)
            except Exception as exc:  # one channel's failure must not reach the others
                log.error("notifier %s failed for alert %s: %r", notifier.name, alert.id, exc)
                return
            delivered.add(notifier.name)

        # issue 20: an alert that names its channels goes to those only (channels.routed)
        routed_to = [n for n in self.notifiers if routed(alert, n.name, named=False)]
        async with asyncio.TaskGroup() as tg:
            for notifier in routed_to:
                tg.create_task(one(notifier))
        for q in self._local:
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(alert.model_dump_json())
        return [n.name for n in self.notifiers if n.name in delivered]

    # -- subscription ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[str]]:
        """Fired alerts as JSON, from every instance (Redis pub/sub) or this one (memory).

        The subscription is confirmed before the context is entered (raises
        ``RedisUnavailable`` when the hub is down). The stream ends when the hub loses its
        connection or this subscriber falls too far behind (alerts may have been missed).
        """
        if self._redis is None:
            queue: asyncio.Queue[str] = asyncio.Queue(1000)
            self._local.add(queue)
            try:
                yield _drain(queue)
            finally:
                self._local.discard(queue)
            return
        async with self._redis.subscription(keys.ALERT_EVENTS) as sub:
            yield _listen(sub)


async def _drain(queue: asyncio.Queue[str]) -> AsyncIterator[str]:
    while True:
        yield await queue.get()


async def _listen(sub: Subscription) -> AsyncIterator[str]:
    while (data := await sub.get()) is not None:
        yield data.decode()
