"""Per-symbol, per-type alert index: evaluating a quote costs O(log n + changed).

Every alert is reduced to the form ``x >= k`` where ``x = vs * value`` and ``k = ts * threshold``
(signs fixed by its type and comparison; see ``_SIGNS``). A group of alerts with the same signs
on one symbol and type keeps its keys sorted. Between the previous observed value ``v0`` and the
new one ``v1`` the truth of ``x >= k`` changes exactly for the keys between ``x0`` and ``x1``:

- ``x1 > x0``: keys in ``(x0, x1]`` became true;
- ``x1 < x0``: keys in ``(x1, x0]`` became false.

Two bisects find that slice, so only the alerts whose truth changed are touched. The previous
truth of an alert this index has not evaluated yet is *unknown*: alerts added since the last
observation of their symbol and type (*pending*) and every alert at the first observation of a
symbol and type (or after ``forget``) report their truth, true or false, so the store's state
is brought in line with it (a restart or a new poller re-arms what went false meanwhile).

Pure and synchronous; not thread-safe (one owner, the alert engine).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from typing import NamedTuple

from marketpulse.domain.alerts import AlertCondition, AlertType

# (type, comparison) -> (value sign, threshold sign): condition <=> vs*value >= ts*threshold
_SIGNS: dict[tuple[AlertType, str], tuple[float, float]] = {
    (AlertType.PRICE_THRESHOLD, "above"): (1.0, 1.0),
    (AlertType.PRICE_THRESHOLD, "below"): (-1.0, -1.0),
    (AlertType.PERCENTAGE_CHANGE, "above"): (1.0, 1.0),
    (AlertType.PERCENTAGE_CHANGE, "below"): (-1.0, 1.0),
    (AlertType.VOLUME_SPIKE, "above"): (1.0, 1.0),
    (AlertType.VOLUME_SPIKE, "below"): (-1.0, -1.0),
}


class Change(NamedTuple):
    """An alert whose condition changed at this observation (a tuple: cheap to make)."""

    alert_id: str
    became_true: bool


@dataclass(slots=True)
class _Group:
    """Alerts of one (symbol, type, signs): parallel lists sorted by key."""

    vs: float
    keys: list[float] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    pending: dict[str, float] = field(default_factory=dict)  # id -> key

    def add(self, alert_id: str, key: float) -> None:
        self.pending[alert_id] = key

    def remove(self, alert_id: str, key: float) -> bool:
        if self.pending.pop(alert_id, None) is not None:
            return True
        lo = bisect_left(self.keys, key)
        hi = bisect_right(self.keys, key, lo)
        for i in range(lo, hi):
            if self.ids[i] == alert_id:
                del self.keys[i]
                del self.ids[i]
                return True
        return False

    def observe(self, x0: float | None, x1: float, out: list[Change]) -> None:
        keys, ids = self.keys, self.ids
        if x0 is None:  # first observation: every alert reports its truth
            hi = bisect_right(keys, x1)
            out.extend(Change(i, True) for i in ids[:hi])
            out.extend(Change(i, False) for i in ids[hi:])
        elif x1 > x0:
            lo = bisect_right(keys, x0)
            hi = bisect_right(keys, x1, lo)
            if hi > lo:
                out.extend(Change(i, True) for i in ids[lo:hi])
        elif x1 < x0:
            lo = bisect_right(keys, x1)
            hi = bisect_right(keys, x0, lo)
            if hi > lo:
                out.extend(Change(i, False) for i in ids[lo:hi])
        if self.pending:
            for alert_id, key in self.pending.items():
                out.append(Change(alert_id, x1 >= key))
                pos = bisect_right(keys, key)
                keys.insert(pos, key)
                ids.insert(pos, alert_id)
            self.pending.clear()

    def __len__(self) -> int:
        return len(self.keys) + len(self.pending)


class AlertIndex:
    """All alerts of the process, indexed for edge-triggered evaluation."""

    def __init__(self) -> None:
        # symbol -> type -> groups (only non-empty types and groups are present)
        self._groups: dict[str, dict[AlertType, list[_Group]]] = {}
        self._by_sign: dict[tuple[str, AlertType, float], _Group] = {}
        self._last: dict[tuple[str, AlertType], float] = {}
        self._alerts: dict[str, AlertCondition] = {}

    def __len__(self) -> int:
        return len(self._alerts)

    def __contains__(self, alert_id: object) -> bool:
        return alert_id in self._alerts

    def get(self, alert_id: str) -> AlertCondition | None:
        return self._alerts.get(alert_id)

    def alerts(self) -> list[AlertCondition]:
        return list(self._alerts.values())

    def symbols(self) -> set[str]:
        return set(self._groups)

    def add(self, alert: AlertCondition) -> None:
        """Index ``alert`` (replacing one with the same id); pending until its next observation."""
        if alert.id in self._alerts:
            self.remove(alert.id)
        vs, ts = _SIGNS[(alert.alert_type, alert.comparison)]
        gk = (alert.symbol, alert.alert_type, vs)
        group = self._by_sign.get(gk)
        if group is None:
            group = self._by_sign[gk] = _Group(vs)
            self._groups.setdefault(alert.symbol, {}).setdefault(alert.alert_type, []).append(group)
        group.add(alert.id, ts * alert.threshold)
        self._alerts[alert.id] = alert

    def remove(self, alert_id: str) -> AlertCondition | None:
        alert = self._alerts.pop(alert_id, None)
        if alert is None:
            return None
        vs, ts = _SIGNS[(alert.alert_type, alert.comparison)]
        gk = (alert.symbol, alert.alert_type, vs)
        group = self._by_sign[gk]
        group.remove(alert_id, ts * alert.threshold)
        if not len(group):
            del self._by_sign[gk]
            types = self._groups[alert.symbol]
            types[alert.alert_type].remove(group)
            if not types[alert.alert_type]:
                del types[alert.alert_type]
            if not types:
                del self._groups[alert.symbol]
        return alert

    def wants(self, symbol: str, alert_type: AlertType) -> bool:
        """Whether any alert of this type watches ``symbol`` (skip computing unused values)."""
        types = self._groups.get(symbol)
        return types is not None and alert_type in types

    def observe(self, symbol: str, values: dict[AlertType, float | None]) -> list[Change]:
        """Record new observed values of ``symbol``; return the alerts whose truth changed.

        A None value (no baseline yet) changes nothing and keeps the previous value.
        """
        out: list[Change] = []
        types = self._groups.get(symbol)
        last = self._last
        for alert_type, v1 in values.items():
            if v1 is None:
                continue
            lk = (symbol, alert_type)
            v0 = last.get(lk)
            last[lk] = v1
            groups = types.get(alert_type) if types is not None else None
            if groups is None:
                continue
            for g in groups:
                g.observe(None if v0 is None else g.vs * v0, g.vs * v1, out)
        return out

    def forget(self, symbol: str | None = None) -> None:
        """Drop the observed values of ``symbol`` (default: all): the next observation reports
        every alert's truth, as the first one does."""
        if symbol is None:
            self._last.clear()
            return
        for alert_type in AlertType:
            self._last.pop((symbol, alert_type), None)
