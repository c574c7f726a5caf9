"""Per-quote cost of 10 indicator specs on 50 symbols over a year of replay data: incremental
books (``alerts/indicators.py``) vs recomputing the batch at each quote (the baseline, same run).

Prints one JSON object. The 50 symbols are windows of the replay's real daily series (AAPL,
IBM, MSFT, GOOG), a year (252 sessions) each, starting every half year; each book starts from
the history ``IndicatorFeed`` would load (``history_bars``), and each session gets 4 quotes
(its open, high, low, then close: three replace the live bar). ``incremental_us_per_quote``
is ``observe`` plus the 10 values, over every quote; ``batch_us_per_quote`` recomputes the 10
values in numpy from the same window (the book's history plus the sessions since, the live
bar last) at a sample of the quotes (every ``--sample``-th). ``max_abs_diff`` is the largest
difference between the two at the sampled quotes (a sanity check, not the test: that is
tests/unit/test_indicators.py). ``book_bytes`` is one book's memory (tracemalloc, averaged).

    uv run --frozen python bench/bench_indicators.py [--sample N]
"""

from __future__ import annotations

import argparse
import json
import math
import time
import tracemalloc
from dataclasses import dataclass

import numpy as np

from marketpulse.alerts.indicator_feed import history_bars
from marketpulse.alerts.indicators import WEEKS_52, IndicatorBook
from marketpulse.alerts.rules import Indicator
from marketpulse.market.providers.replay import load_stock_series
from marketpulse.market.quotes import FloatArray

SPECS = [
    Indicator(kind="rsi", period=14),
    Indicator(kind="sma", period=50),
    Indicator(kind="ema", period=20),
    Indicator(kind="price_vs_sma", period=200),
    Indicator(kind="price_vs_ema", period=50),
    Indicator(kind="ma_cross", fast=50, slow=200, average="sma"),
    Indicator(kind="change_sessions", period=20),
    Indicator(kind="from_52w_high"),
    Indicator(kind="from_52w_low"),
    Indicator(kind="drawdown", period=60),
]
SYMBOLS = 50
SESSIONS = 252
STRIDE = 126  # sessions between two windows of one series


@dataclass(frozen=True)
class Window:
    name: str
    dates: list[str]
    close: FloatArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    first: int  # index of the first quoted session


def windows(history: int) -> list[Window]:
    out: list[Window] = []
    series = load_stock_series()
    starts: dict[str, list[int]] = {}
    for sym in ("AAPL", "IBM", "MSFT", "GOOG"):
        n = len(series[sym].dates)
        starts[sym] = list(range(history, n - SESSIONS + 1, STRIDE))
    while len(out) < SYMBOLS:
        for sym, firsts in starts.items():
            if firsts and len(out) < SYMBOLS:
                i = firsts.pop(0)
                s = series[sym]
                lo, hi = i - history, i + SESSIONS
                out.append(
                    Window(
                        name=f"{sym}@{s.dates[i]}",
                        dates=[str(d) for d in s.dates[lo:hi]],
                        close=s.close[lo:hi],
                        open=s.open[lo:hi],
                        high=s.high[lo:hi],
                        low=s.low[lo:hi],
                        first=history,
                    )
                )
    return out


# -- the baseline: every value recomputed from the window at each quote ----------------------


def ema(x: FloatArray, n: int) -> float:
    k = 2.0 / (n + 1)
    e = float(np.mean(x[:n]))
    for v in x[n:].tolist():
        e = k * v + (1 - k) * e
    return e


def rsi(x: FloatArray, n: int) -> float:
    d = np.diff(x)
    gain, loss = np.where(d > 0, d, 0.0), np.where(d < 0, -d, 0.0)
    g, l_ = float(np.mean(gain[:n])), float(np.mean(loss[:n]))
    for gi, li in zip(gain[n:].tolist(), loss[n:].tolist(), strict=True):
        g = (g * (n - 1) + gi) / n
        l_ = (l_ * (n - 1) + li) / n
    return 100.0 if l_ == 0 else 100.0 * g / (g + l_)


def batch(spec: Indicator, x: FloatArray) -> float:
    price = float(x[-1])
    n = spec.period or 0
    match spec.kind:
        case "rsi":
            return rsi(x, n)
        case "sma":
            return float(np.mean(x[-n:]))
        case "ema":
            return ema(x, n)
        case "price_vs_sma":
            return 100 * (price / float(np.mean(x[-n:])) - 1)
        case "price_vs_ema":
            return 100 * (price / ema(x, n) - 1)
        case "ma_cross":
            assert spec.fast is not None and spec.slow is not None
            return 100 * (float(np.mean(x[-spec.fast :])) / float(np.mean(x[-spec.slow :])) - 1)
        case "change_sessions":
            return 100 * (price / float(x[-1 - n]) - 1)
        case "from_52w_high":
            return 100 * (1 - price / float(np.max(x[-WEEKS_52:])))
        case "from_52w_low":
            return 100 * (price / float(np.min(x[-WEEKS_52:])) - 1)
        case "drawdown":
            return 100 * (1 - price / float(np.max(x[-n:])))
    raise AssertionError(spec.kind)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", type=int, default=20, help="the baseline runs every N-th quote")
    args = ap.parse_args()
    history = history_bars(SPECS) - 1
    wins = windows(history)

    # incremental: every quote of every symbol, session by session (symbols interleaved)
    books = [
        IndicatorBook(list(zip(w.dates[: w.first], w.close[: w.first], strict=True)), specs=SPECS)
        for w in wins
    ]
    quotes = 0
    sampled: list[tuple[int, int, int, float, list[float | None]]] = []
    spent = 0.0
    for j in range(SESSIONS):
        for book, w in zip(books, wins, strict=True):
            i = w.first + j
            day = w.dates[i]
            for q, price in enumerate((w.open[i], w.high[i], w.low[i], w.close[i])):
                p = float(price)
                t0 = time.perf_counter()
                book.observe(day, p)
                values = [book.value(s) for s in SPECS]
                spent += time.perf_counter() - t0
                if quotes % args.sample == 0:
                    sampled.append((wins.index(w), i, q, p, values))
                quotes += 1
    incremental_us = spent / quotes * 1e6

    # baseline: the same values recomputed from the window at the sampled quotes
    spent, diff = 0.0, 0.0
    for k, i, _, p, values in sampled:
        w = wins[k]
        x = np.append(w.close[:i], p)  # the completed sessions, the live price last
        t0 = time.perf_counter()
        again = [batch(s, x) for s in SPECS]
        spent += time.perf_counter() - t0
        for got, want in zip(values, again, strict=True):
            assert got is not None
            diff = max(diff, abs(got - want))
    batch_us = spent / len(sampled) * 1e6
    assert math.isfinite(diff) and diff < 1e-6, diff

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    more = [
        IndicatorBook(list(zip(w.dates[: w.first], w.close[: w.first], strict=True)), specs=SPECS)
        for w in wins[:10]
    ]
    book_bytes = (tracemalloc.get_traced_memory()[0] - before) / len(more)
    tracemalloc.stop()

    print(
        json.dumps(
            {
                "bench": "indicators",
                "symbols": len(wins),
                "specs": len(SPECS),
                "sessions": SESSIONS,
                "quotes_per_session": 4,
                "quotes": quotes,
                "history_bars": history,
                "incremental_us_per_quote": round(incremental_us, 2),
                "batch_us_per_quote": round(batch_us, 2),
                "batch_sampled_quotes": len(sampled),
                "ratio_batch_over_incremental": round(batch_us / incremental_us, 1),
                "max_abs_diff": diff,
                "book_bytes": round(book_bytes),
            }
        )
    )


if __name__ == "__main__":
    main()
