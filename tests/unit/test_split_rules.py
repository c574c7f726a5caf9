"""When a jump is a split (alerts/splits.py), and the markets that carry one (simulated test
schedule, replay data)."""

from __future__ import annotations

from datetime import datetime

import pytest

from marketpulse.alerts.rules import AlertCondition, AlertType
from marketpulse.alerts.splits import confirm, matches, rebased, rebased_quote
from marketpulse.market.providers.replay import ReplaySource
from marketpulse.market.providers.simulated import SPLIT_WINDOW, SimulatedSource
from marketpulse.market.quotes import Split, StockData


def quote(price: float, day: str, *splits: Split, previous_close: float | None = None) -> StockData:
    return StockData(
        symbol="NVDA", price=price, volume=10, timestamp=datetime.fromisoformat(day + "T15:00Z"),
        high=price, low=price, open=price, close=previous_close or price,
        previous_close=previous_close, splits=splits,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("jump", "ratio", "expected"),
    [
        (4.0, 4.0, True),  # the split alone
        (4.0 / 1.19, 4.0, True),  # and a 19 % rise the same day
        (4.0 / 0.81, 4.0, True),  # or a 19 % fall
        (4.0 / 1.3, 4.0, False),  # a 30 % move on top: beyond MAX_MOVE, left unconfirmed
        (1.0, 4.0, False),  # no jump: the source had adjusted both prices
        (1.0, 1.25, False),  # ... even for a 5:4 split (half its log distance is ~11 %)
        (1.25 / 1.1, 1.25, True),
        (1.25 / 1.15, 1.25, False),  # nearer to "no jump" than to the split
        (2.0, 4.0, False),  # a halving is not a 4:1
        (0.1, 0.1, True),  # a 1:10 reverse split: the price x10
        (10.0, 0.1, False),  # the wrong way
        (float("nan"), 2.0, False),
    ],
)
def test_a_jump_matches_a_split_within_the_tolerance(
    jump: float, ratio: float, expected: bool
) -> None:
    assert matches(jump, ratio) is expected


def test_a_split_confirms_only_a_jump_across_its_ex_date() -> None:
    four = Split(date="2021-07-20", ratio=4.0)
    after = quote(187.0, "2021-07-20", four)
    assert confirm(after, 751.0, "2021-07-19") == four
    assert confirm(after, 187.5, "2021-07-19") is None  # no jump: nothing to confirm
    assert confirm(after, 751.0, "2021-07-20") is None  # the earlier observation was post-split
    assert confirm(quote(187.0, "2021-07-20"), 751.0, "2021-07-19") is None  # none reported
    assert confirm(after, None, None) is None  # no earlier observation
    later = quote(185.0, "2021-07-22", four)  # observed again only two days later
    assert confirm(later, 751.0, "2021-07-19") == four


def test_rebase_divides_price_thresholds_only() -> None:
    def c(t: AlertType, th: float) -> AlertCondition:
        return AlertCondition(symbol="NVDA", alert_type=t, threshold=th, comparison="below")

    price = rebased(c(AlertType.PRICE_THRESHOLD, 600.0), 4.0)
    assert price is not None and price.threshold == 150.0
    assert rebased(c(AlertType.PERCENTAGE_CHANGE, 5.0), 4.0) is None
    assert rebased(c(AlertType.VOLUME_SPIKE, 3.0), 4.0) is None


def test_a_pre_split_previous_close_is_rebased_for_the_evaluation() -> None:
    four = Split(date="2021-07-20", ratio=4.0)
    unadjusted = rebased_quote(quote(187.0, "2021-07-20", four, previous_close=751.0), four)
    assert unadjusted.previous_close == pytest.approx(187.75)
    adjusted = quote(187.0, "2021-07-20", four, previous_close=187.75)  # Yahoo's
    assert rebased_quote(adjusted, four) is adjusted


def test_the_simulated_schedule_splits_bars_and_reports_the_split() -> None:
    plain, split = SimulatedSource(seed=7), SimulatedSource(seed=7, splits={"msft": [(10, 4.0)]})
    assert split.bar("MSFT", 9) == plain.bar("MSFT", 9)
    b, p = split.bar("MSFT", 10), plain.bar("MSFT", 10)
    assert b.close == round(p.close / 4, 2)
    assert b.volume == p.volume * 4
    assert split.history("MSFT", 11, 3)[0] == plain.bar("MSFT", 9)  # earlier bars unadjusted
    assert [x.close for x in split.history("MSFT", 11, 2)] == [
        split.bar("MSFT", 10).close,
        split.bar("MSFT", 11).close,
    ]
    assert split.splits("MSFT", 9) == ()
    reported = [t for t in range(5, 25) if split.splits("MSFT", t)]
    assert reported == list(range(10, 10 + SPLIT_WINDOW))
    assert split.splits("AAPL", 10) == ()
    with pytest.raises(ValueError, match="ratio > 0"):
        SimulatedSource(splits={"MSFT": [(3, 0.0)]})


def test_replay_reports_the_splits_of_its_own_data() -> None:
    src = ReplaySource(start="2005-02-22")  # tick 4: 2005-02-28, AAPL 2:1
    assert src.splits("AAPL", 3) == ()
    assert src.splits("AAPL", 4) == (Split(date="2005-02-28", ratio=2.0),)
    assert src.splits("AAPL", 9) == ()  # SPLIT_WINDOW trading days on
    assert src.splits("IBM", 4) == ()
    msft = ReplaySource(start="2003-02-18")
    assert msft.splits("MSFT", 0) == (Split(date="2003-02-18", ratio=2.0),)
