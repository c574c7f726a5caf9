"""Per-symbol, per-type alert index: evaluating a quote costs O(log n + changed).

Every alert is reduced to a *key* ``k`` in the space of its observed value and a side: it holds
when ``value >= k`` (an *above* side) or when ``value <= k`` (a *below* side); see ``_SIGNS``
(``% change below T`` is ``value <= -T``). Each symbol and alert type has one *track*: the last
observed value and the keys of all its alerts, both sides, in one sorted array. Between the
previous observed value ``v0`` and the new one ``v1`` the truth changes exactly for the keys
between them:

- above: ``v1 > v0`` makes the keys in ``(v0, v1]`` true, ``v1 < v0`` those in ``(v1, v0]``
  false;
- below: ``v1 > v0`` makes the keys in ``[v0, v1)`` false, ``v1 < v0`` those in ``[v1, v0)``
  true.

So, but for keys equal to ``v0`` or ``v1`` (then each key's side is looked at), one slice of the
track holds exactly the alerts whose truth changed. It is found by a bisect that starts where
the last value sat (a small move reads a cache line or two of keys, a large one is a full
bisect), and each alert's two ``Change`` values are made once, when it is indexed, so reporting
the slice is a list copy.

The previous truth of an alert this index has not evaluated yet is *unknown*: alerts added since
the last observation of their symbol and type (*pending*) and every alert at the first
observation of a symbol and type (or after ``forget``) report their truth, true or false, so the
store's state is brought in line with it (a restart or a new poller re-arms what went false
meanwhile). A None (or NaN) value changes nothing and keeps the previous one.

The hot path does no dict lookup keyed by ``AlertType`` (its hash is Python code): a type is
mapped to its slot by the member's identity. Memory: about 190 bytes per alert (two ``Change``
tuples, a key, the definition's entry). Pure and synchronous; not thread-safe (one owner, the
alert engine).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from operator import itemgetter
from typing import NamedTuple

from marketpulse.alerts.rules import AlertCondition, AlertType

# (type, comparison) -> (value sign, threshold sign): condition <=> vs*value >= ts*threshold,
# i.e. value >= vs*ts*threshold when vs > 0 (above side), value <= vs*ts*threshold otherwise
_SIGNS: dict[tuple[AlertType, str], tuple[float, float]] = {
    (AlertType.PRICE_THRESHOLD, "above"): (1.0, 1.0),
    (AlertType.PRICE_THRESHOLD, "below"): (-1.0, -1.0),
    (AlertType.PERCENTAGE_CHANGE, "above"): (1.0, 1.0),
    (AlertType.PERCENTAGE_CHANGE, "below"): (-1.0, 1.0),
    (AlertType.VOLUME_SPIKE, "above"): (1.0, 1.0),
    (AlertType.VOLUME_SPIKE, "below"): (-1.0, -1.0),
}
# id(member) -> slot: enum members live as long as their class, so their ids are stable
_SLOT: dict[int, int] = {id(t): i for i, t in enumerate(AlertType)}
_KEY = itemgetter(0)
_NEAR = 8  # keys a quote looks at around the last value before a full binary search


class Change(NamedTuple):
    """An alert whose condition changed at this observation (a tuple: cheap to make)."""

    alert_id: str
    became_true: bool


def _placement(alert: AlertCondition) -> tuple[bool, float]:
    """(above side?, key) of ``alert``."""
    vs, ts = _SIGNS[(alert.alert_type, alert.comparison)]
    return vs > 0, vs * ts * alert.threshold


class _Track:
    """One symbol and alert type: the last observed value and its alerts, sorted by key.

    ``rise[i]`` is what the alert with key ``keys[i]`` reports when the value crosses its key
    upwards (``Change(id, True)`` on the above side, ``Change(id, False)`` below), ``fall[i]``
    the opposite. A move from ``a`` to ``b`` (either way, ``a < b``) changes the keys in
    ``[a, b]``, except a key equal to ``a`` on the above side and one equal to ``b`` below.

    ``at`` is where the last value sits in ``keys`` while no key equals it and the keys have
    not changed since (else -1): a quote then searches only near it, reading a cache line or
    two of ``keys`` instead of a whole binary search's worth.
    """

    __slots__ = ("at", "fall", "keys", "last", "pending", "rise")

    def __init__(self) -> None:
        self.last: float | None = None
        self.at = -1
        self.keys = array("d")
        self.rise: list[Change] = []
        self.fall: list[Change] = []
        self.pending: dict[str, tuple[bool, float]] | None = None  # id -> (above, key)

    def __len__(self) -> int:
        return len(self.keys) + (len(self.pending) if self.pending else 0)

    def observe(self, v1: float, out: list[Change]) -> None:
        v0, p, keys = self.last, self.at, self.keys
        if v0 is None or p < 0 or self.pending is not None:
            self._settle(v0, v1, out)
        elif v1 > v0:  # keys[p - 1] < v0 < keys[p]
            self.last = v1
            e = p + _NEAR
            if e < len(keys) and keys[e] > v1:
                hi = bisect_right(keys, v1, p, e)
            else:
                hi = bisect_right(keys, v1, p)
            if hi > p:
                if keys[hi - 1] == v1:
                    self._settle(v0, v1, out)
                else:
                    out += self.rise[p:hi]
                    self.at = hi
        elif v1 < v0:
            self.last = v1
            s = p - _NEAR
            if s >= 0 and keys[s] < v1:
                lo = bisect_left(keys, v1, s, p)
            else:
                lo = bisect_left(keys, v1, 0, p)
            if p > lo:
                if keys[lo] == v1:
                    self._settle(v0, v1, out)
                else:
                    out += self.fall[lo:p]
                    self.at = lo

    def _settle(self, v0: float | None, v1: float, out: list[Change]) -> None:
        """Any observation, the slow way: a first one (``v0`` None: every indexed alert reports
        its truth at ``v1``), one with pending alerts (they report their truth and are
        indexed), or one landing on a key."""
        if v1 != v1:  # NaN: no observation
            return
        self.last = v1
        keys, rise, fall = self.keys, self.rise, self.fall
        if v0 is None:
            for k, r, f in zip(keys, rise, fall, strict=True):
                out.append(r if (k <= v1 if r.became_true else k < v1) else f)
        elif v1 != v0:
            a, b, changes = (v0, v1, rise) if v1 > v0 else (v1, v0, fall)
            lo = bisect_left(keys, a)
            for i in range(lo, bisect_right(keys, b, lo)):
                if (keys[i] != a) if rise[i].became_true else (keys[i] != b):
                    out.append(changes[i])
        if self.pending is not None:
            self._merge(v1, out)
        p = bisect_left(self.keys, v1)
        self.at = -1 if p < len(self.keys) and self.keys[p] == v1 else p

    def add(self, alert_id: str, above: bool, key: float) -> None:
        if self.pending is None:
            self.pending = {}
        self.pending[alert_id] = (above, key)

    def remove(self, alert_id: str, key: float) -> None:
        if self.pending is not None and self.pending.pop(alert_id, None) is not None:
            if not self.pending:
                self.pending = None
            return
        keys, rise, fall = self.keys, self.rise, self.fall
        for i in range(bisect_left(keys, key), bisect_right(keys, key)):
            if rise[i].alert_id == alert_id:
                del keys[i]
                del rise[i], fall[i]
                self.at = -1
                return

    def _merge(self, v1: float, out: list[Change]) -> None:
        """Index the pending alerts, reporting their truth at ``v1``."""
        pending, keys = self.pending, self.keys
        assert pending is not None
        self.pending = None
        if len(pending) * 8 < len(keys):  # a few: insert in place
            rise, fall = self.rise, self.fall
            for alert_id, (above, key) in pending.items():
                t, f = Change(alert_id, True), Change(alert_id, False)
                out.append(t if (v1 >= key if above else v1 <= key) else f)
                pos = bisect_right(keys, key)
                keys.insert(pos, key)
                rise.insert(pos, t if above else f)
                fall.insert(pos, f if above else t)
            return
        rows = [(k, r.alert_id, r.became_true) for k, r in zip(keys, self.rise, strict=True)]
        for alert_id, (above, key) in pending.items():
            out.append(Change(alert_id, v1 >= key if above else v1 <= key))
            rows.append((key, alert_id, above))
        rows.sort(key=_KEY)
        # made in key order, so the changes of neighbouring keys are neighbours in memory
        self.keys = array("d", [row[0] for row in rows])
        self.rise = [Change(alert_id, above) for _, alert_id, above in rows]
        self.fall = [Change(alert_id, not above) for _, alert_id, above in rows]


class AlertIndex:
    """All alerts of the process, indexed for edge-triggered evaluation."""

    def __init__(self) -> None:
        # per AlertType slot: symbol -> its track, present while it has alerts of that type
        self._tracks: tuple[dict[str, _Track], ...] = tuple({} for _ in _SLOT)
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
        return set().union(*self._tracks)

    def add(self, alert: AlertCondition) -> None:
        """Index ``alert`` (replacing one with the same id); pending until its next observation."""
        if alert.id in self._alerts:
            self.remove(alert.id)
        tracks = self._tracks[_SLOT[id(alert.alert_type)]]
        track = tracks.get(alert.symbol)
        if track is None:
            track = tracks[alert.symbol] = _Track()
        track.add(alert.id, *_placement(alert))
        self._alerts[alert.id] = alert

    def remove(self, alert_id: str) -> AlertCondition | None:
        alert = self._alerts.pop(alert_id, None)
        if alert is None:
            return None
        tracks = self._tracks[_SLOT[id(alert.alert_type)]]
        track = tracks[alert.symbol]
        track.remove(alert_id, _placement(alert)[1])
        if not len(track):
            del tracks[alert.symbol]
        return alert

    def wants(self, symbol: str, alert_type: AlertType) -> bool:
        """Whether any alert of this type watches ``symbol`` (skip computing unused values)."""
        return symbol in self._tracks[_SLOT[id(alert_type)]]

    def watching(self, symbol: str, alert_type: AlertType) -> int:
        """How many alerts of this type watch ``symbol``."""
        track = self._tracks[_SLOT[id(alert_type)]].get(symbol)
        return 0 if track is None else len(track)

    def observe(self, symbol: str, values: dict[AlertType, float | None]) -> list[Change]:
        """Record new observed values of ``symbol``; return the alerts whose truth changed.

        A None value (no baseline yet) changes nothing and keeps the previous value; so does
        NaN (a value that compares with nothing).
        """
        out: list[Change] = []
        tracks = self._tracks
        for alert_type, v1 in values.items():
            if v1 is not None:
                track = tracks[_SLOT[id(alert_type)]].get(symbol)
                if track is not None:
                    track.observe(v1, out)
        return out

    def forget(self, symbol: str | None = None) -> None:
        """Drop the observed values of ``symbol`` (default: all): the next observation reports
        every alert's truth, as the first one does."""
        for tracks in self._tracks:
            chosen = tracks.values() if symbol is None else [tracks.get(symbol)]
            for track in chosen:
                if track is not None:
                    track.last = None
