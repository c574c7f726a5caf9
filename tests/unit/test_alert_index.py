"""The alert index against a naive scan of every alert (property test), plus its edges."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from marketpulse.alerts.index import AlertIndex
from marketpulse.alerts.rules import SEED_TYPES, AlertCondition, AlertType, holds

SEED = sorted(SEED_TYPES, key=lambda t: t.value)  # the index holds the seed's types only

SYMBOLS = ["AAPL", "MSFT"]
levels = st.sampled_from([-10.0, -5.0, 0.0, 1.0, 2.5, 5.0, 10.0, 100.0])
alert_st = st.builds(
    lambda s, t, th, c: AlertCondition(symbol=s, alert_type=t, threshold=th, comparison=c),
    st.sampled_from(SYMBOLS),
    st.sampled_from(SEED),
    st.sampled_from([0.0, 1.0, 2.5, 5.0, 10.0, 100.0]),
    st.sampled_from(["above", "below"]),
)
value_st = st.one_of(st.none(), levels, st.floats(-200, 200, allow_nan=False))
step_st = st.one_of(
    st.tuples(
        st.just("obs"),
        st.sampled_from(SYMBOLS),
        st.dictionaries(st.sampled_from(SEED), value_st),
    ),
    st.tuples(st.just("add"), alert_st, st.none()),
    st.tuples(st.just("remove"), st.integers(0, 50), st.none()),
    st.tuples(st.just("forget"), st.sampled_from([*SYMBOLS, None]), st.none()),
)


class Naive:
    """Evaluate every alert on every observation; an alert's first evaluation reports its truth."""

    def __init__(self) -> None:
        self.alerts: dict[str, AlertCondition] = {}
        self.truth: dict[str, bool] = {}

    def observe(self, symbol: str, values: dict[AlertType, float | None]) -> set[tuple[str, bool]]:
        out = set()
        for a in self.alerts.values():
            v = values.get(a.alert_type)
            if a.symbol != symbol or v is None:
                continue
            now = holds(a, v)
            if a.id not in self.truth or now != self.truth[a.id]:
                out.add((a.id, now))
            self.truth[a.id] = now
        return out

    def forget(self, symbol: str | None) -> None:
        for a in self.alerts.values():
            if symbol is None or a.symbol == symbol:
                self.truth.pop(a.id, None)


@settings(max_examples=400, deadline=None)
@given(initial=st.lists(alert_st, max_size=25), steps=st.lists(step_st, max_size=40))
def test_index_reports_exactly_the_changes_a_naive_scan_finds(
    initial: list[AlertCondition], steps: list[tuple[str, object, object]]
) -> None:
    index, naive = AlertIndex(), Naive()
    for a in initial:
        index.add(a)
        naive.alerts[a.id] = a
    for kind, arg, values in steps:
        if kind == "add":
            assert isinstance(arg, AlertCondition)
            index.add(arg)
            naive.alerts[arg.id] = arg
        elif kind == "remove":
            assert isinstance(arg, int)
            ids = sorted(naive.alerts)
            if ids:
                victim = ids[arg % len(ids)]
                assert index.remove(victim) is not None
                del naive.alerts[victim]
                naive.truth.pop(victim, None)
        elif kind == "forget":
            assert arg is None or isinstance(arg, str)
            index.forget(arg)
            naive.forget(arg)
        else:
            assert isinstance(arg, str)
            assert isinstance(values, dict)
            got = {(c.alert_id, c.became_true) for c in index.observe(arg, values)}
            assert got == naive.observe(arg, values)
    assert len(index) == len(naive.alerts)


def test_only_alerts_between_old_and_new_value_are_touched() -> None:
    index = AlertIndex()
    alerts = [
        AlertCondition(
            symbol="AAPL",
            alert_type=AlertType.PRICE_THRESHOLD,
            threshold=float(t),
            comparison="above",
        )
        for t in range(100)
    ]
    for a in alerts:
        index.add(a)
    first = index.observe("AAPL", {AlertType.PRICE_THRESHOLD: 10.0})
    assert len(first) == 100  # the first observation reports every alert's truth
    assert sum(c.became_true for c in first) == 11  # thresholds 0..10
    up = index.observe("AAPL", {AlertType.PRICE_THRESHOLD: 12.5})
    assert {c.alert_id for c in up} == {alerts[11].id, alerts[12].id}
    down = index.observe("AAPL", {AlertType.PRICE_THRESHOLD: 11.0})
    assert [(c.alert_id, c.became_true) for c in down] == [(alerts[12].id, False)]
    assert index.observe("AAPL", {AlertType.PRICE_THRESHOLD: 11.0}) == []


def test_missing_baseline_keeps_previous_value() -> None:
    index = AlertIndex()
    a = AlertCondition(
        symbol="AAPL", alert_type=AlertType.VOLUME_SPIKE, threshold=3, comparison="above"
    )
    index.add(a)
    assert index.observe("AAPL", {AlertType.VOLUME_SPIKE: None}) == []
    assert [c.became_true for c in index.observe("AAPL", {AlertType.VOLUME_SPIKE: 4.0})] == [True]
    index.forget()
    assert [c.became_true for c in index.observe("AAPL", {AlertType.VOLUME_SPIKE: 2.0})] == [False]
    assert [c.became_true for c in index.observe("AAPL", {AlertType.VOLUME_SPIKE: 4.0})] == [True]
    assert index.observe("AAPL", {AlertType.VOLUME_SPIKE: None}) == []
    assert index.observe("AAPL", {AlertType.VOLUME_SPIKE: 5.0}) == []
