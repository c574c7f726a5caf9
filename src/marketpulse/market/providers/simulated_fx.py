"""The ``simulated`` market's exchange rates: a deterministic walk of each currency against USD.

Guarantees (the same purity rules as the stock walk in ``simulated.py``):

- Each currency in ``USD_LEVELS`` has a level in units per USD that starts at a realistic rate
  at tick 0 (INR ≈ 84, EUR ≈ 0.92, JPY ≈ 150, ...) and moves by its own seeded daily log-walk
  (0.3–0.6 % a day, from the currency's CRC32; pegged currencies 0.02 %), without drift. USD
  itself is fixed at 1. ``(seed, currency, tick)`` gives the same level on every instance,
  whatever the order of calls: draws are seeded per block of ticks, and levels are accumulated
  outwards from tick 0 in whole blocks.
- A pair ``AB=X`` (one A in B) is ``level_B / level_A``: ``INRUSD=X`` is exactly
  ``1 / USDINR=X`` at the same tick, ``AA=X`` is 1. Other crosses are inverse to rounding.
- Bars open at the previous tick's rate; high and low lie a fixed margin outside open and
  close (the same for a pair and its inverse, so one's high is the other's low inverted, to
  rounding). Volume is 0 (FX has no exchange volume). Prices are not rounded to cents: a
  JPYUSD rate is about 0.0067.
- Tick ``t`` has the same business-day date as the stocks, so histories join on dates.

Levels are kept per currency for its latest ``KEEP_BLOCKS`` blocks of ticks only; an older
range is computed again by a path built for that call, identically.
"""

from __future__ import annotations

import math
import threading
import zlib
from collections.abc import Mapping

import numpy as np

from marketpulse.market.quotes import Bar, FloatArray

BLOCK = 1024
KEEP_BLOCKS = 4  # blocks of levels kept per currency, the latest
_BIAS = 2**40
_FX_TAG = 4  # distinct from the stock walk's tags (1-3)
PEG_VOL = 0.0002  # daily volatility of a pegged currency

# Units of each currency per USD at tick 0 (late-2025 levels, rounded).
USD_LEVELS: Mapping[str, float] = {
    "USD": 1.0, "EUR": 0.92, "GBP": 0.79, "JPY": 150.0, "CHF": 0.88, "CAD": 1.37, "AUD": 1.52,
    "NZD": 1.68, "HKD": 7.8, "SGD": 1.34, "CNY": 7.2, "KRW": 1380.0, "INR": 84.0, "ZAR": 18.2,
    "ILS": 3.7, "SEK": 10.5, "DKK": 6.87, "NOK": 10.8, "PLN": 3.95, "CZK": 23.0, "HUF": 365.0,
    "RON": 4.6, "BGN": 1.8, "ISK": 138.0, "TRY": 34.0, "BRL": 5.5, "MXN": 18.5, "IDR": 16000.0,
    "MYR": 4.5, "PHP": 57.0, "THB": 35.0, "TWD": 32.0, "SAR": 3.75, "AED": 3.6725,
}  # fmt: skip
PEGGED = frozenset({"HKD", "SAR", "AED", "BGN"})  # held near a fixed rate by their central banks


def daily_vol(ccy: str) -> float:
    """The currency's daily log volatility against USD (0 for USD itself)."""
    if ccy == "USD":
        return 0.0
    if ccy in PEGGED:
        return PEG_VOL
    rng = np.random.default_rng(np.random.SeedSequence([_FX_TAG, zlib.crc32(ccy.encode())]))
    return float(rng.uniform(0.003, 0.006))


class _LevelPath:
    """Log levels (units per USD) of one currency for ticks [first, end), grown by blocks."""

    def __init__(self, seed: int, ccy: str, first: int) -> None:
        self._seed = seed
        self._crc = zlib.crc32(ccy.encode("utf-8"))
        self._vol = daily_vol(ccy)
        self.first = first
        lo, hi = first, BLOCK
        r = self._returns(lo, hi)
        zero = -lo
        log0 = math.log(USD_LEVELS[ccy])
        # outwards from tick 0, so a tick's value never depends on how far history reaches
        up = np.cumsum(np.concatenate(([log0], r[zero + 1 :])))
        down = np.cumsum(np.concatenate(([log0], -r[zero::-1])))
        self.log_level: FloatArray = np.concatenate((down[:0:-1], up))
        self.end = hi

    def _returns(self, lo: int, hi: int) -> FloatArray:
        first, last = lo // BLOCK, (hi - 1) // BLOCK
        joined = np.concatenate([self._block(b) for b in range(first, last + 1)])
        start = lo - first * BLOCK
        out: FloatArray = self._vol * joined[start : start + hi - lo]
        return out

    def _block(self, block: int) -> FloatArray:
        seq = np.random.SeedSequence([self._seed, _FX_TAG, self._crc, block + _BIAS])
        return np.random.default_rng(seq).standard_normal(BLOCK)

    def grow_to(self, tick: int) -> None:
        while tick >= self.end:
            lo, hi = self.end, self.end + BLOCK
            steps = np.cumsum(np.concatenate(([self.log_level[-1]], self._returns(lo, hi))))
            self.log_level = np.concatenate((self.log_level, steps[1:]))
            self.end = hi

    def trim(self) -> None:
        """Drop whole leading blocks beyond the latest ``KEEP_BLOCKS`` (a copy: the array
        sliced from is freed)."""
        excess = self.end - self.first - KEEP_BLOCKS * BLOCK
        if excess >= BLOCK:
            k = excess // BLOCK * BLOCK
            self.log_level = self.log_level[k:].copy()
            self.first += k


class FxWalk:
    """Levels of every currency in ``USD_LEVELS`` against USD; thread-safe."""

    def __init__(self, seed: int, first: int) -> None:
        self._seed = seed
        self._first = first
        self._lock = threading.Lock()
        self._paths: dict[str, _LevelPath] = {}

    @staticmethod
    def knows(ccy: str) -> bool:
        return ccy in USD_LEVELS

    def levels(self, ccy: str, lo: int, hi: int) -> FloatArray:
        """Units of ``ccy`` per USD at ticks [lo, hi) (``lo >= first - 1``)."""
        if ccy == "USD":
            return np.ones(hi - lo)
        with self._lock:
            path = self._paths.get(ccy)
            if path is None:
                path = _LevelPath(self._seed, ccy, self._first - 1)  # the first bar's open
                self._paths[ccy] = path
            if lo < path.first:  # trimmed away: computed again, not kept
                path = _LevelPath(self._seed, ccy, self._first - 1)
                path.grow_to(hi - 1)
            else:
                path.grow_to(hi - 1)
                path.trim()
            logs = path.log_level[lo - path.first : hi - path.first]
        out: FloatArray = np.exp(logs)
        return out

    def bars(self, ccy: str, base: str, lo: int, hi: int, dates: list[str]) -> list[Bar]:
        """Bars of ``{ccy}{base}=X`` (one ``ccy`` in ``base``) at ticks [lo, hi), lo >= first."""
        rate = self.levels(base, lo - 1, hi) / self.levels(ccy, lo - 1, hi)
        open_, close = rate[:-1], rate[1:]
        margin = 1.0 if ccy == base else math.exp(0.5 * math.hypot(daily_vol(ccy), daily_vol(base)))
        high = np.maximum(open_, close) * margin
        low = np.minimum(open_, close) / margin
        return [
            Bar(date=d, open=o, high=h, low=lw, close=c, adj_close=c, volume=0)
            for d, o, h, lw, c in zip(
                dates, open_.tolist(), high.tolist(), low.tolist(), close.tolist(), strict=True
            )
        ]
