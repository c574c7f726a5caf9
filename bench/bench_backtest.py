"""The backtest (``alerts/backtest.py``) on one year of daily data, 50 symbols and 10 rules,
against a naive loop in the same run that re-evaluates each rule from scratch at every bar.

Prints one JSON object. Data: the simulated market's 50 symbols (``SIM00``..``SIM49``), the
2026 sessions (tick 0 is 2026-01-02), with the warm-up bars before them the backtest asks
for. ``backtest_s``: ``Backtester.run`` of the 10 rules on the 50 symbols, end to end
(histories from an in-memory feed, calendars, replay, the answer models). The naive loop, for
each bar, rebuilds what the rule needs from the whole prefix of bars before it (a fresh
``IndicatorBook`` from every close, the volume window from the prefix), evaluates the bar and
applies ``transition``: the answer must be the same fires (``naive_agrees``), only the cost
differs. It is run on ``--naive-symbols`` of the symbols (it is slow), and compared per
(rule, symbol): ``ratio`` = naive ms per (rule, symbol) / backtest ms per (rule, symbol).

    uv run --frozen python bench/bench_backtest.py [--naive-symbols N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence
from datetime import date

from marketpulse.alerts.backtest import Backtester, replay, warmup_bars
from marketpulse.alerts.indicator_feed import session_of
from marketpulse.alerts.indicators import IndicatorBook
from marketpulse.alerts.rules import (
    VOLUME_WINDOW,
    AlertCondition,
    Outcome,
    evaluate,
    initial_state,
    transition,
    usable,
)
from marketpulse.market.calendar import Calendars
from marketpulse.market.providers.simulated import SimulatedSource
from marketpulse.market.providers.tick_provider import quote_of_bar
from marketpulse.market.quotes import Bar, StockData

SYMBOLS = [f"SIM{i:02d}" for i in range(50)]
LAST_TICK = 260  # 2026-12-31
START, END = date(2026, 1, 2), date(2026, 12, 31)


def rules() -> list[AlertCondition]:
    def r(**kw: object) -> AlertCondition:
        return AlertCondition.model_validate({"symbol": "SIM00", **kw})

    rsi = {"kind": "rsi", "period": 14}
    return [
        r(alert_type="price_threshold", comparison="above", threshold=100.0),
        r(alert_type="price_threshold", comparison="crosses_below", threshold=95.0,
          rearm_margin=1.0),
        r(alert_type="percentage_change", comparison="above", threshold=2.0),
        r(alert_type="percentage_change", comparison="below", threshold=2.0, cooldown_s=5 * 86_400),
        r(alert_type="volume_spike", comparison="above", threshold=1.5),
        r(alert_type="indicator", indicator=rsi, comparison="crosses_above", threshold=70,
          rearm_margin=2.0),
        r(alert_type="indicator", indicator={"kind": "price_vs_sma", "period": 50},
          comparison="crosses_below", threshold=0),
        r(alert_type="indicator", indicator={"kind": "ma_cross", "fast": 10, "slow": 50},
          comparison="crosses_above", threshold=0),
        r(alert_type="indicator", indicator={"kind": "drawdown", "period": 20},
          comparison="above", threshold=8),
        r(alert_type="all_of", comparison="above", all_of=[
            {"alert_type": "indicator", "indicator": rsi, "comparison": "below", "threshold": 35},
            {"alert_type": "percentage_change", "comparison": "below", "threshold": 1.0},
        ]),
    ]  # fmt: skip


class MemoryFeed:
    """``QuoteFeed.history`` of the simulated market at ``LAST_TICK``, from memory."""

    def __init__(self) -> None:
        self.source = SimulatedSource(seed=7, history_days=1_200)
        self.bars = {s: self.source.history(s, LAST_TICK, 1_500) for s in SYMBOLS}

    async def history(self, symbol: str, n: int = 253, *, tick: int | None = None) -> list[Bar]:
        return self.bars[symbol][-n:]

    async def fetch_stock_data(self, symbol: str, *, tick: int | None = None) -> StockData:
        raise NotImplementedError("a backtest reads histories only")

    async def fetch_batch_data(
        self, symbols: Sequence[str], *, tick: int | None = None
    ) -> dict[str, StockData]:
        raise NotImplementedError("a backtest reads histories only")


def naive(rule: AlertCondition, symbol: str, bars: Sequence[Bar]) -> list[str]:
    """Fire dates of ``rule``, rebuilding everything from the prefix at every bar."""
    alert = rule.model_copy(update={"symbol": symbol})
    lo, hi = START.isoformat(), END.isoformat()
    first = next(i for i, b in enumerate(bars) if b.date >= lo)
    warm = bars[max(0, first - warmup_bars(alert)) : first]
    inside = [b for b in bars[first:] if b.date <= hi]
    state, fires = initial_state(alert), []
    specs = alert.indicators()
    seen: list[Bar] = []  # the range's observed bars so far
    for bar in inside:
        past = [*warm, *seen]
        quote = quote_of_bar(symbol, bar, past[-1].close if past else None, source="naive",
                             currency="USD")  # fmt: skip
        seen.append(bar)
        if not usable(quote):
            continue
        book = None
        if specs:  # from scratch: every close before this bar, then this bar
            book = IndicatorBook([(b.date, b.close) for b in past], specs=specs)
            book.observe(session_of(quote), quote.price)
        volumes = [b.volume for b in past][-VOLUME_WINDOW:]
        ev = evaluate(alert, quote, volumes=volumes, indicators=book)
        if ev is None:
            continue
        at = quote.timestamp.timestamp()
        state, outcome = transition(
            state,
            obs=int(at * 1e6),
            at=at,
            cooldown_s=alert.cooldown_s,
            expires_at=None,
            ev=ev,
            snoozed_until=None,
        )
        if outcome is Outcome.FIRED:
            fires.append(bar.date)
    return fires


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--naive-symbols", type=int, default=3)
    args = ap.parse_args()
    feed = MemoryFeed()
    calendars = Calendars()
    backtester = Backtester(feed, calendars)
    await backtester.run(rules()[0], SYMBOLS[:1], START, END)  # warm: calendars, imports
    t0 = time.perf_counter()
    answers = [await backtester.run(rule, SYMBOLS, START, END) for rule in rules()]
    backtest_s = time.perf_counter() - t0
    pairs = len(rules()) * len(SYMBOLS)

    sample = SYMBOLS[: args.naive_symbols]
    t0 = time.perf_counter()
    naive_fires = {(i, s): naive(rule, s, feed.bars[s]) for i, rule in enumerate(rules())
                   for s in sample}  # fmt: skip
    naive_s = time.perf_counter() - t0
    agrees = _agree(naive_fires, feed)
    backtest_ms = 1000 * backtest_s / pairs
    naive_ms = 1000 * naive_s / (len(rules()) * len(sample))
    print(
        json.dumps(
            {
                "symbols": len(SYMBOLS),
                "rules": len(rules()),
                "sessions": answers[0].symbols[0].observations,
                "fires": sum(a.fire_count for a in answers),
                "backtest_s": round(backtest_s, 3),
                "backtest_ms_per_rule_symbol": round(backtest_ms, 3),
                "naive_symbols": len(sample),
                "naive_ms_per_rule_symbol": round(naive_ms, 3),
                "ratio": round(naive_ms / backtest_ms, 1),
                "naive_agrees": agrees,
            }
        )
    )


def _agree(naive_fires: dict[tuple[int, str], list[str]], feed: MemoryFeed) -> bool:
    """The backtest without a calendar (every bar a session, as the naive loop) fires on the
    same dates."""
    for (i, symbol), dates in naive_fires.items():
        done = replay(rules()[i], symbol, feed.bars[symbol], START, END)
        if [f.fired_at.date().isoformat() for f in done.fires] != dates:
            return False
    return True


if __name__ == "__main__":
    asyncio.run(main())
