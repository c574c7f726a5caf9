"""Quote evaluation cost with 1,000,000 alerts over 5,000 symbols: the index vs a naive scan.

Prints one JSON object. ``index_us_per_quote`` is the steady-state cost of ``AlertIndex.observe``
for one price quote (a random-walk move, the symbol's price-threshold alerts); the same quotes
through a scan of every alert give ``naive_us_per_quote`` (the baseline, same run).
``all_types_*`` redraws % change and volume ratio on every quote too, so many alerts flip:
there the O(changed) term dominates; ``index_bytes_per_alert`` is what the index adds per
alert on top of the alert definitions (tracemalloc). Target: <= 2 µs per quote.

    uv run --frozen python bench/bench_alert_index.py [--alerts N] [--symbols N]
"""

from __future__ import annotations

import argparse
import json
import random
import time
import tracemalloc

from marketpulse.alerts.index import AlertIndex
from marketpulse.alerts.rules import AlertCondition, AlertType, holds

TARGET_US = 2.0


def make_alerts(n: int, symbols: list[str], rng: random.Random) -> list[AlertCondition]:
    types = list(AlertType)
    out = []
    for i in range(n):
        t = types[i % 3]
        base = {AlertType.PRICE_THRESHOLD: 100.0, AlertType.PERCENTAGE_CHANGE: 0.0,
                AlertType.VOLUME_SPIKE: 1.0}[t]  # fmt: skip
        spread = {AlertType.PRICE_THRESHOLD: 30.0, AlertType.PERCENTAGE_CHANGE: 5.0,
                  AlertType.VOLUME_SPIKE: 2.0}[t]  # fmt: skip
        out.append(
            AlertCondition.model_construct(  # validation skipped: the inputs are well-formed
                symbol=symbols[i % len(symbols)],
                alert_type=t,
                threshold=abs(base + rng.uniform(-spread, spread)),
                comparison="above" if rng.random() < 0.5 else "below",
                id=f"a{i}",
                cooldown_s=0.0,
                expires_at=None,
            )
        )
    return out


def quotes(
    symbols: list[str], n: int, rng: random.Random
) -> list[tuple[str, dict[AlertType, float | None]]]:
    price = {s: 100.0 for s in symbols}
    out: list[tuple[str, dict[AlertType, float | None]]] = []
    for _ in range(n):
        s = symbols[rng.randrange(len(symbols))]
        move = rng.gauss(0, 0.01)
        price[s] *= 1 + move
        values: dict[AlertType, float | None] = {AlertType.PRICE_THRESHOLD: price[s]}
        values[AlertType.PERCENTAGE_CHANGE] = 100 * move
        values[AlertType.VOLUME_SPIKE] = rng.lognormvariate(0, 0.35)
        out.append((s, values))
    return out


def naive(
    alerts: list[AlertCondition], qs: list[tuple[str, dict[AlertType, float | None]]]
) -> float:
    truth: dict[str, bool] = {}
    start = time.perf_counter()
    for sym, values in qs:
        for a in alerts:  # every alert, every quote
            if a.symbol != sym:
                continue
            v = values.get(a.alert_type)
            if v is None:
                continue
            now = holds(a, v)
            if now != truth.get(a.id, False):
                truth[a.id] = now
    return (time.perf_counter() - start) / len(qs)


def timed(
    index: AlertIndex, qs: list[tuple[str, dict[AlertType, float | None]]]
) -> tuple[float, float]:
    """Seconds per quote and changes per quote."""
    changed = 0
    start = time.perf_counter()
    for sym, values in qs:
        changed += len(index.observe(sym, values))
    return (time.perf_counter() - start) / len(qs), changed / len(qs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alerts", type=int, default=1_000_000)
    parser.add_argument("--symbols", type=int, default=5_000)
    parser.add_argument("--quotes", type=int, default=200_000)
    parser.add_argument("--naive-quotes", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(7)
    symbols = [f"S{i:05d}" for i in range(args.symbols)]
    alerts = make_alerts(args.alerts, symbols, rng)

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    index = AlertIndex()
    for a in alerts:
        index.add(a)
    for s in symbols:  # first observations: merge pending alerts, set the previous values
        index.observe(s, {t: 1.0 for t in AlertType})
    index_bytes = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()

    qs = quotes(symbols, args.quotes, rng)
    price_only = [(s, {AlertType.PRICE_THRESHOLD: v[AlertType.PRICE_THRESHOLD]}) for s, v in qs]
    index_s, changed = timed(index, price_only)
    all_s, all_changed = timed(index, qs)
    naive_s = naive(alerts, price_only[: args.naive_quotes])

    print(json.dumps({
        "alerts": args.alerts,
        "symbols": args.symbols,
        "quotes_timed": len(qs),
        "price_quote": "a ±1% (σ) move of the price; the price-threshold alerts of the symbol",
        "changes_per_quote": round(changed, 3),
        "index_us_per_quote": round(index_s * 1e6, 3),
        "naive_us_per_quote": round(naive_s * 1e6, 1),
        "all_types_quote": "price, % change and volume ratio all redrawn: many alerts flip",
        "all_types_changes_per_quote": round(all_changed, 3),
        "all_types_index_us_per_quote": round(all_s * 1e6, 3),
        "speedup": round(naive_s / index_s, 1),
        "index_bytes_per_alert": round(index_bytes / args.alerts, 1),
        "target_us_per_quote": TARGET_US,
        "meets_target": index_s * 1e6 <= TARGET_US,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
