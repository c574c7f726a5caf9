"""The alert store in process memory: ``AlertManager.in_memory()`` uses it.

Same contract as ``RedisAlertStore`` (the contract tests run against both), but nothing survives
the process and nothing is shared between processes.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Sequence
from datetime import datetime

from marketpulse.alerts.event import FiredAlert
from marketpulse.alerts.rules import (
    VOLUME_WINDOW,
    AlertCondition,
    AlertState,
    Evaluation,
    Outcome,
    initial_state,
    transition,
)
from marketpulse.alerts.splits import CorporateAction, Rebased
from marketpulse.alerts.store import HISTORY_CAP, SplitApplied

SEEN_SYMBOLS = 10_000  # symbols whose last observations are kept (least recently seen dropped)


class _Seen:
    """The last two observations of a symbol: (obs, price, day) each."""

    __slots__ = ("before", "last")

    def __init__(self, last: tuple[int, float, str]) -> None:
        self.last = last
        self.before: tuple[int, float, str] | None = None


class MemoryAlertStore:
    def __init__(self, *, history_cap: int = HISTORY_CAP) -> None:
        self._alerts: dict[str, AlertCondition] = {}
        self._states: dict[str, AlertState] = {}
        self._version = 0
        self._volumes: dict[str, dict[int, int]] = {}
        self._history: deque[FiredAlert] = deque(maxlen=history_cap)
        self._deliveries: OrderedDict[str, dict[str, datetime]] = OrderedDict()
        self._cap = history_cap
        self._symbols: set[str] = set()
        self._cursor: int | None = None
        self._chosen = False  # see RedisAlertStore: an emptied watchlist is never re-seeded
        self._seen: OrderedDict[str, _Seen] = OrderedDict()  # bounded: SEEN_SYMBOLS
        self._splits: OrderedDict[tuple[str, str], int] = OrderedDict()  # bounded: history_cap
        self._actions: deque[CorporateAction] = deque(maxlen=history_cap)

    async def add(self, alert: AlertCondition, *, cap: int = 0, reset: bool = False) -> bool:
        if cap > 0 and alert.id not in self._alerts and len(self._alerts) >= cap:
            return False
        self._alerts[alert.id] = alert
        old = self._states.get(alert.id)
        if old is None:
            self._states[alert.id] = initial_state(alert)
        elif reset:
            fresh = initial_state(alert)
            self._states[alert.id] = AlertState(fresh.armed, None, old.last_fired_at, old.muted)
        self._version += 1
        return True

    async def remove(self, alert_id: str) -> bool:
        self._states.pop(alert_id, None)
        self._version += 1
        return self._alerts.pop(alert_id, None) is not None

    async def all(self) -> list[AlertCondition]:
        return list(self._alerts.values())

    async def version(self) -> int:
        return self._version

    async def apply(
        self,
        alert: AlertCondition,
        *,
        obs: int,
        truth: bool,
        at: float,
        fired: FiredAlert | None,
        rearm: bool | None = None,
    ) -> Outcome:
        state = self._states.get(alert.id)
        if state is None:
            return Outcome.GONE
        expires = None if alert.expires_at is None else alert.expires_at.timestamp()
        ev = Evaluation(truth, (not truth) if rearm is None else rearm, None)
        muted_until = None
        if fired is not None and fired.muted:  # the caller decided it from snoozed_until
            muted_until = at + 1.0
        new, outcome = transition(
            state, obs=obs, ev=ev, at=at, cooldown_s=alert.cooldown_s, expires_at=expires,
            snoozed_until=muted_until,
        )  # fmt: skip
        self._states[alert.id] = new
        if outcome is Outcome.FIRED:
            if fired is None:
                raise ValueError("a true observation needs the alert it would fire")
            self._history.append(fired)
        return outcome

    async def states(self, alert_ids: Sequence[str]) -> dict[str, AlertState]:
        return {i: self._states[i] for i in alert_ids if i in self._states}

    async def volumes(self, symbol: str, *, obs: int, volume: int) -> list[int]:
        window = self._volumes.setdefault(symbol, {})
        window.setdefault(obs, volume)
        for old in sorted(window)[: -(VOLUME_WINDOW + 1)]:
            del window[old]
        return [window[k] for k in sorted(window) if k < obs][-VOLUME_WINDOW:]

    async def record_delivery(self, fire_id: str, channel: str, at: datetime) -> None:
        self._deliveries.setdefault(fire_id, {}).setdefault(channel, at)
        while len(self._deliveries) > self._cap:
            self._deliveries.popitem(last=False)

    async def history(self, symbol: str | None, limit: int) -> list[FiredAlert]:
        rows = [f for f in reversed(self._history) if symbol is None or f.symbol == symbol]
        return [f.delivered(self._deliveries.get(f.id, {})) for f in rows[:limit]]

    async def add_symbol(self, symbol: str, *, cap: int = 0) -> bool | None:
        new = symbol not in self._symbols
        if new and cap > 0 and len(self._symbols) >= cap:
            return None
        self._chosen = True
        self._symbols.add(symbol)
        return new

    async def remove_symbol(self, symbol: str) -> bool:
        self._chosen = True
        if symbol in self._symbols:
            self._symbols.discard(symbol)
            return True
        return False

    async def symbols(self) -> list[str]:
        return sorted(self._symbols)

    async def seed_symbols(self, symbols: Sequence[str]) -> list[str]:
        if not symbols or self._chosen:
            return []
        self._chosen = True
        if self._symbols:
            return []
        self._symbols.update(symbols)
        return list(symbols)

    async def cursor(self) -> int | None:
        return self._cursor

    async def advance_cursor(self, tick: int) -> None:
        if self._cursor is None or tick > self._cursor:
            self._cursor = tick

    # -- splits (see RedisAlertStore) ------------------------------------------------------------

    async def observe_price(
        self, symbol: str, *, obs: int, price: float, day: str
    ) -> tuple[float, str] | None:
        seen = self._seen.get(symbol)
        if seen is None:
            self._seen[symbol] = _Seen((obs, price, day))
            while len(self._seen) > SEEN_SYMBOLS:
                self._seen.popitem(last=False)
            return None
        self._seen.move_to_end(symbol)
        if obs > seen.last[0]:
            previous = seen.last
            seen.before, seen.last = previous, (obs, price, day)
            return previous[1], previous[2]
        if obs == seen.last[0] and seen.before is not None:
            return seen.before[1], seen.before[2]
        return None

    async def raw_alerts(self) -> dict[str, str]:
        return {k: a.model_dump_json() for k, a in self._alerts.items()}

    async def apply_split(
        self, action: CorporateAction, rewrites: Sequence[tuple[str, str, str, str]]
    ) -> SplitApplied:
        marker = (action.symbol, action.split_date)
        if marker in self._splits:
            return SplitApplied(False, [], self._splits[marker])
        self._splits[marker] = action.observation
        while len(self._splits) > self._cap:
            self._splits.popitem(last=False)
        window = self._volumes.get(action.symbol, {})
        for k in window:
            if k < action.observation:
                window[k] = int(window[k] * action.ratio + 0.5)
        done: list[str] = []
        entries: list[Rebased] = []
        for alert_id, old, new, entry in rewrites:
            current = self._alerts.get(alert_id)
            if current is not None and current.model_dump_json() == old:
                self._alerts[alert_id] = AlertCondition.model_validate_json(new)
                done.append(alert_id)
                entries.append(Rebased.model_validate_json(entry))
        if done:
            self._version += 1
        self._actions.append(action.model_copy(update={"rebased": entries}))
        return SplitApplied(True, done, action.observation)

    async def corporate_actions(self, symbol: str | None, limit: int) -> list[CorporateAction]:
        rows = [a for a in reversed(self._actions) if symbol is None or a.symbol == symbol]
        return rows[:limit]
