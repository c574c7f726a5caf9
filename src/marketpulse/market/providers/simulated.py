"""The ``simulated`` market: a deterministic, correlated random walk for any ticker.

Guarantees:

- Pure: the same ``(seed, symbol, tick)`` gives the same bar on every instance and in every
  process, whatever the order of calls. Random draws are seeded per block of ticks from the seed
  and a CRC32 of the symbol (never Python's salted ``hash``), and closes are accumulated from
  tick 0 outwards in whole blocks, so no call can change how another value is computed.
- Ticks run from ``-history_days`` upwards without bound, so history exists at tick 0; a tick
  below that raises ``PermanentSourceError``. Values at a tick do not depend on ``history_days``.
- Returns of every symbol load on one market factor (shared through the seed), so symbols are
  correlated; each symbol has its own beta, daily volatility (1–3 %), start price (20–500) and
  base volume, derived from the symbol alone.
- Bars satisfy ``high >= max(open, close) >= min(open, close) >= low > 0``, prices in cents,
  ``adj_close == close``; volume is log-normal around the base with 3–8× spikes on ~2 % of days.
- Tick ``t`` is the ``t``-th business day (Mon–Fri) from 2026-01-02, so dates are monotonic.
- Pair symbols (``USDINR=X``, ``market/fx.py``) of two currencies in the FX level table are
  exchange rates, not stocks: a deterministic walk around realistic levels
  (``simulated_fx.py``) on the same dates. A pair of another currency is unknown.
- ``currency(symbol)``: a pair's quote currency, else the exchange suffix's guess
  (``fx.currency_for_suffix``: ``.NS``/``.BO`` INR, no suffix USD, ...).
- Splits (for tests; none by default): ``splits={"AAPL": [(tick, 4.0)]}`` makes the market
  split that symbol 4:1 at that tick: from it on, its bars are the walk's prices divided by the
  product of the ratios so far (rounded to cents) and its volumes multiplied by it; earlier
  bars are unadjusted, as a live source shows them. ``splits(symbol, tick)`` reports the
  splits of the last ``SPLIT_WINDOW`` ticks (Yahoo's 5-day chart), which the quote carries.

Bars are generated lazily in blocks and cached per symbol as numpy arrays: ``bar`` is O(1)
amortised. The cache is bounded in symbols and in ticks: at most ``MAX_PATHS`` symbols (least
recently used dropped), each holding its latest ``KEEP_BLOCKS`` blocks of bars (~40 bytes a
tick), and ``MARKET_BLOCKS`` blocks of market shocks. A bar outside what is kept is computed
again by a path built from scratch, identically (the same seeds, the same block order), and not
kept. Thread-safe (one lock per instance guards the caches).
"""

from __future__ import annotations

import math
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from marketpulse.errors import PermanentSourceError
from marketpulse.market.fx import currency_for_suffix, parse_pair
from marketpulse.market.providers.simulated_fx import FxWalk
from marketpulse.market.quotes import Bar, FloatArray, Split
from marketpulse.market.symbols import normalize_symbol

IntArray = npt.NDArray[np.int64]

ANCHOR = np.datetime64("2026-01-02", "D")  # the date of tick 0, a Friday
BLOCK = 1024  # ticks generated at a time
MAX_PATHS = 1024  # symbols whose bars are kept (any symbol is a ticker: the cache is bounded)
KEEP_BLOCKS = 4  # blocks of bars a kept path holds, the latest: an older tick is rebuilt
MARKET_BLOCKS = 64  # blocks of market shocks kept (least recently used dropped, regenerated)
MARKET_VOL = 0.011  # daily volatility of the market factor
MARKET_DRIFT = 0.0003  # daily log drift of the market factor
SPIKE_P = 0.02  # share of days with a volume spike
VOLUME_SIGMA = 0.35  # log-normal volume dispersion
_U64 = 2**64
_BIAS = 2**40  # SeedSequence entropy must be non-negative; blocks below tick 0 are negative
_MARKET_TAG, _SYMBOL_TAG, _PROFILE_TAG = 1, 2, 3


def _crc(symbol: str) -> int:
    return zlib.crc32(symbol.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class SymbolProfile:
    """Constants of one symbol, derived from the symbol alone (the same under any seed)."""

    beta: float  # loading on the market factor
    idio_vol: float  # daily volatility of the symbol's own noise
    start_price: float  # close at tick 0
    base_volume: float  # median daily volume outside spikes

    @classmethod
    def of(cls, symbol: str) -> SymbolProfile:
        rng = np.random.default_rng(np.random.SeedSequence([_PROFILE_TAG, _crc(symbol)]))
        vol = float(rng.uniform(0.01, 0.03))  # total daily volatility
        r2 = float(rng.uniform(0.3, 0.6))  # share of the variance the market explains
        return cls(
            beta=vol * math.sqrt(r2) / MARKET_VOL,
            idio_vol=vol * math.sqrt(1.0 - r2),
            start_price=math.exp(rng.uniform(math.log(20.0), math.log(500.0))),
            base_volume=math.exp(rng.uniform(math.log(5e5), math.log(5e7))),
        )

    @property
    def vol(self) -> float:
        return math.hypot(self.beta * MARKET_VOL, self.idio_vol)


def _span(block_rows: Callable[[int], FloatArray], lo: int, hi: int) -> FloatArray:
    """Columns for ticks [lo, hi) cut from the per-block arrays that cover them."""
    first, last = lo // BLOCK, (hi - 1) // BLOCK
    joined = np.concatenate([block_rows(b) for b in range(first, last + 1)], axis=-1)
    start = lo - first * BLOCK
    return joined[..., start : start + hi - lo]


class _SymbolPath:
    """Bars of one symbol for ticks [first, end), grown upward by whole blocks."""

    def __init__(
        self, seed: int, symbol: str, history_days: int, market: Callable[[int], FloatArray]
    ) -> None:
        self._seed = seed
        self._crc = _crc(symbol)
        self._market = market
        self.profile = SymbolProfile.of(symbol)
        self.first = -history_days
        lo, hi = self.first, BLOCK
        draws = self._draws(lo, hi)
        r = self._returns(draws, lo, hi)
        zero = -lo  # column of tick 0
        log0 = math.log(self.profile.start_price)
        # Accumulate outwards from tick 0 so a tick's value never depends on history_days.
        up = np.cumsum(np.concatenate(([log0], r[zero + 1 :])))  # ticks 0 .. hi-1
        down = np.cumsum(np.concatenate(([log0], -r[zero::-1])))  # ticks 0, -1, .. lo-1
        log_close = np.concatenate((down[:0:-1], up))  # ticks lo-1 .. hi-1
        self._log_last = float(log_close[-1])
        close = np.exp(log_close)
        self._set(*self._bars(draws, close[:-1], close[1:]))
        self.end = hi

    def _block_draws(self, block: int) -> FloatArray:
        seq = np.random.SeedSequence([self._seed, _SYMBOL_TAG, self._crc, block + _BIAS])
        rng = np.random.default_rng(seq)
        # rows: idiosyncratic, gap, high, low, volume (normal); spike?, spike size (uniform)
        return np.concatenate((rng.standard_normal((5, BLOCK)), rng.random((2, BLOCK))))

    def _draws(self, lo: int, hi: int) -> FloatArray:
        return _span(self._block_draws, lo, hi)

    def _returns(self, draws: FloatArray, lo: int, hi: int) -> FloatArray:
        p = self.profile
        z_market = _span(self._market, lo, hi)
        drift = p.beta * MARKET_DRIFT - 0.5 * p.vol**2
        result: FloatArray = drift + p.beta * MARKET_VOL * z_market + p.idio_vol * draws[0]
        return result

    def _bars(
        self, draws: FloatArray, prev_close: FloatArray, close: FloatArray
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, IntArray]:
        vol = self.profile.vol
        open_ = prev_close * np.exp(0.3 * vol * draws[1])
        high = np.maximum(open_, close) * np.exp(0.5 * vol * np.abs(draws[2]))
        low = np.minimum(open_, close) * np.exp(-0.5 * vol * np.abs(draws[3]))
        spike = np.where(draws[5] < SPIKE_P, 3.0 + 5.0 * draws[6], 1.0)
        volume = self.profile.base_volume * np.exp(VOLUME_SIGMA * draws[4]) * spike
        # Cents, floored at one cent: rounding is monotonic, so the OHLC order survives it.
        cents = [np.maximum(np.round(a, 2), 0.01) for a in (open_, high, low, close)]
        return (
            cents[0],
            cents[1],
            cents[2],
            cents[3],
            np.maximum(np.rint(volume), 1).astype(np.int64),
        )

    def _set(
        self, open_: FloatArray, high: FloatArray, low: FloatArray, close: FloatArray, vol: IntArray
    ) -> None:
        self.open, self.high, self.low, self.close, self.volume = open_, high, low, close, vol

    def grow_to(self, tick: int) -> None:
        """Generate whole blocks until ``tick`` is covered."""
        while tick >= self.end:
            lo, hi = self.end, self.end + BLOCK
            draws = self._draws(lo, hi)
            r = self._returns(draws, lo, hi)
            log_close = np.cumsum(np.concatenate(([self._log_last], r)))
            self._log_last = float(log_close[-1])
            close = np.exp(log_close)
            o, h, low, c, v = self._bars(draws, close[:-1], close[1:])
            self._set(
                np.concatenate((self.open, o)),
                np.concatenate((self.high, h)),
                np.concatenate((self.low, low)),
                np.concatenate((self.close, c)),
                np.concatenate((self.volume, v)),
            )
            self.end = hi

    def trim(self) -> None:
        """Drop whole leading blocks beyond the latest ``KEEP_BLOCKS`` (copies: the arrays
        sliced from are freed)."""
        excess = self.end - self.first - KEEP_BLOCKS * BLOCK
        if excess >= BLOCK:
            k = excess // BLOCK * BLOCK
            o, h, low, c = (a[k:].copy() for a in (self.open, self.high, self.low, self.close))
            self._set(o, h, low, c, self.volume[k:].copy())
            self.first += k


def tick_dates(lo: int, hi: int) -> list[str]:
    """ISO dates of ticks [lo, hi): business days counted from 2026-01-02 (tick 0)."""
    days = np.busday_offset(ANCHOR, np.arange(lo, hi), roll="forward")
    return [str(d) for d in days]


SPLIT_WINDOW = 5  # ticks a split stays reported after its ex-date (Yahoo's live chart: 5 days)


class SimulatedSource:
    """Deterministic correlated random walk for any ticker (see the module docstring)."""

    name: str = "simulated"

    def __init__(
        self,
        seed: int = 42,
        history_days: int = 300,
        *,
        splits: Mapping[str, Sequence[tuple[int, float]]] | None = None,
    ) -> None:
        if history_days < 0:
            raise ValueError(f"history_days must be >= 0, got {history_days}")
        self._splits: dict[str, list[tuple[int, float]]] = {}
        for symbol, events in (splits or {}).items():
            sym = normalize_symbol(symbol)
            if sym is None or any(not (math.isfinite(r) and r > 0) for _, r in events):
                raise ValueError(f"a split needs a symbol and a ratio > 0: {symbol!r} {events}")
            self._splits[sym] = sorted(events)
        self.seed = seed
        self.history_days = history_days
        self._seed_u = seed % _U64
        self._lock = threading.Lock()
        self._market_blocks: OrderedDict[int, FloatArray] = OrderedDict()
        self._paths: OrderedDict[str, _SymbolPath] = OrderedDict()
        self._fx = FxWalk(self._seed_u, -history_days)

    def knows(self, symbol: str) -> bool:
        """Any symbol (``market/symbols.py``), case-insensitive, except a pair symbol of a
        currency the FX walk has no level for."""
        sym = normalize_symbol(symbol)
        if sym is None:
            return False
        pair = parse_pair(sym)
        return pair is None or (FxWalk.knows(pair[0]) and FxWalk.knows(pair[1]))

    def currency(self, symbol: str) -> str:
        """A pair's quote currency; otherwise a guess from the exchange suffix."""
        return currency_for_suffix(symbol)

    def bar(self, symbol: str, tick: int) -> Bar:
        """The bar shown at ``tick``; raises ``PermanentSourceError`` for a bad symbol or tick."""
        pair = self._pair(symbol, tick)
        if pair is not None:
            return self._fx.bars(*pair, tick, tick + 1, tick_dates(tick, tick + 1))[0]
        path, i = self._locate(symbol, tick)
        bar = Bar(
            date=tick_dates(tick, tick + 1)[0],
            open=float(path.open[i]),
            high=float(path.high[i]),
            low=float(path.low[i]),
            close=float(path.close[i]),
            adj_close=float(path.close[i]),
            volume=int(path.volume[i]),
        )
        return self._split_bars(symbol, tick, [bar])[0] if self._splits else bar

    def splits(self, symbol: str, tick: int) -> tuple[Split, ...]:
        """The splits of ``symbol`` at ticks in ``(tick - SPLIT_WINDOW, tick]``, oldest first."""
        events = self._splits.get(normalize_symbol(symbol) or "", [])
        return tuple(
            Split(date=tick_dates(at, at + 1)[0], ratio=r)
            for at, r in events
            if tick - SPLIT_WINDOW < at <= tick
        )

    def _split_bars(self, symbol: str, last: int, bars: list[Bar]) -> list[Bar]:
        """``bars`` (ending at tick ``last``) as the split schedule shows them."""
        events = self._splits.get(normalize_symbol(symbol) or "")
        if not events:
            return bars
        out: list[Bar] = []
        for tick, bar in zip(range(last - len(bars) + 1, last + 1), bars, strict=True):
            f = math.prod(r for at, r in events if at <= tick)
            if f == 1.0:
                out.append(bar)
                continue
            o, h, low, c = (round(x / f, 2) for x in (bar.open, bar.high, bar.low, bar.close))
            out.append(Bar(bar.date, o, h, low, c, c, round(bar.volume * f)))
        return out

    def history(self, symbol: str, tick: int, n: int) -> list[Bar]:
        """Up to ``n`` daily bars ending at ``tick`` (inclusive), oldest first."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        pair = self._pair(symbol, tick)
        if pair is not None:
            lo = max(-self.history_days, tick - n + 1)
            return self._fx.bars(*pair, lo, tick + 1, tick_dates(lo, tick + 1)) if n else []
        path, i = self._locate(symbol, tick, tick - n + 1)
        j = max(0, i - n + 1)
        cols = (path.open, path.high, path.low, path.close, path.volume)
        o, h, low, c, v = (a[j : i + 1].tolist() for a in cols)
        dates = tick_dates(path.first + j, tick + 1)
        bars = [
            Bar(date=d, open=oo, high=hh, low=ll, close=cc, adj_close=cc, volume=vv)
            for d, oo, hh, ll, cc, vv in zip(dates, o, h, low, c, v, strict=True)
        ]
        return self._split_bars(symbol, tick, bars) if self._splits else bars

    def _pair(self, symbol: str, tick: int) -> tuple[str, str] | None:
        """(ccy, base) when ``symbol`` is an exchange rate the walk has; None for a stock."""
        sym = self._checked(symbol, tick)
        pair = parse_pair(sym)
        if pair is None:
            return None
        if not (FxWalk.knows(pair[0]) and FxWalk.knows(pair[1])):
            raise PermanentSourceError(f"no simulated exchange rate for {sym}")
        return pair

    def _checked(self, symbol: str, tick: int) -> str:
        sym = normalize_symbol(symbol)
        if sym is None:
            raise PermanentSourceError(f"not a ticker symbol: {symbol!r}")
        if tick < -self.history_days:
            raise PermanentSourceError(
                f"no data for {sym} at tick {tick}: simulated history starts at tick "
                f"{-self.history_days}"
            )
        return sym

    def _locate(self, symbol: str, tick: int, lo: int | None = None) -> tuple[_SymbolPath, int]:
        """The path holding ticks [lo, tick] of ``symbol`` (``lo`` defaults to ``tick``) and the
        index of ``tick`` in it: the kept one, or a path built for this call when the kept one
        no longer holds ``lo``."""
        sym = self._checked(symbol, tick)
        lo = tick if lo is None else max(lo, -self.history_days)
        with self._lock:
            path = self._paths.get(sym)
            if path is None:
                path = _SymbolPath(self._seed_u, sym, self.history_days, self._market_block)
                self._paths[sym] = path
                if len(self._paths) > MAX_PATHS:
                    self._paths.popitem(last=False)
            else:
                self._paths.move_to_end(sym)
            if lo < path.first:  # trimmed away: an old tick, computed again and not kept
                path = _SymbolPath(self._seed_u, sym, self.history_days, self._market_block)
                path.grow_to(tick)
            else:
                path.grow_to(tick)
                path.trim()
        return path, tick - path.first

    def _market_block(self, block: int) -> FloatArray:
        """Standard normal market shocks of one block of ticks (caller holds the lock)."""
        z = self._market_blocks.get(block)
        if z is None:
            seq = np.random.SeedSequence([self._seed_u, _MARKET_TAG, block + _BIAS])
            z = np.random.default_rng(seq).standard_normal(BLOCK)
            self._market_blocks[block] = z
            if len(self._market_blocks) > MARKET_BLOCKS:
                self._market_blocks.popitem(last=False)
        else:
            self._market_blocks.move_to_end(block)
        return z
