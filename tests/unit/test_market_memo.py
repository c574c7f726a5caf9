"""The market's history memo is bounded by ticks and by bytes, and answers what the source has."""

from __future__ import annotations

import pytest

from marketpulse.market import view
from marketpulse.market.providers import SimulatedSource
from marketpulse.market.view import HISTORY_BARS, MEMO_TICKS, Market

SYMBOLS = ["AAPL", "MSFT", "GOOGL", "RELIANCE.NS", "TCS.NS"]


async def test_keeps_only_the_latest_ticks_of_each_symbol() -> None:
    source = SimulatedSource(seed=3)
    market = Market(source)
    for tick in range(40):
        for s in SYMBOLS:
            got = await market.history(s, tick)
            want = source.history(s, tick, HISTORY_BARS)
            assert got == tuple((b.date, b.adj_close) for b in want)
    assert market.memo_entries == MEMO_TICKS * len(SYMBOLS)
    assert 0 < market.memo_bytes <= view.MEMO_BYTES
    # an old tick is recomputed, equal, and does not push out more than its symbol's oldest
    again = await market.history("AAPL", 3)
    assert again == tuple((b.date, b.adj_close) for b in source.history("AAPL", 3, HISTORY_BARS))
    assert market.memo_entries == MEMO_TICKS * len(SYMBOLS)


async def test_an_entry_is_a_small_fraction_of_a_tuple_of_pairs() -> None:
    market = Market(SimulatedSource(seed=3))
    await market.history("AAPL", 10)
    assert market.memo_bytes < 6 * 1024  # a tuple of 253 (str, float) pairs is ~35 KiB


async def test_the_byte_bound_evicts_the_least_recently_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    market = Market(SimulatedSource(seed=3))
    await market.history("AAPL", 1)
    one = market.memo_bytes
    monkeypatch.setattr(view, "MEMO_BYTES", 3 * one)
    for s in SYMBOLS:
        await market.history(s, 1)
    assert market.memo_entries == 3
    assert market.memo_bytes <= 3 * one
    # the three most recently used are kept
    before = market.memo_bytes
    await market.history(SYMBOLS[-1], 1)
    assert market.memo_bytes == before and market.memo_entries == 3
