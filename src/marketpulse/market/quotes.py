"""Quotes and bars: the values market data is made of (pure, no I/O)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

FloatArray = npt.NDArray[np.float64]  # price paths and return series


class Split(BaseModel):
    """A stock split a provider reports: from ``date`` (``YYYY-MM-DD``, the exchange's first
    session at the new share count, the ex-date) one old share is ``ratio`` new ones, so
    prices divide by ``ratio`` and volumes multiply by it (4:1 is 4.0; a 1:10 reverse split is
    0.1). Yahoo's ``numerator / denominator``."""

    model_config = ConfigDict(frozen=True)

    date: str = Field(description="the ex-date, YYYY-MM-DD", examples=["2021-07-20"])
    ratio: float = Field(
        gt=0,
        allow_inf_nan=False,
        description="new shares per old share (4:1 is 4.0; a 1:10 reverse split 0.1)",
        examples=[4.0],
    )


class StockData(BaseModel):
    """One quote of one symbol (the seed's model, plus where it came from and how fresh it is).

    ``close`` is the previous session's close in the seed's usage; ``previous_close`` says so
    explicitly. ``stale`` marks a last-good quote served because every source failed; ``age_s``
    is its age in seconds at the time it was served. ``currency`` is the ISO 4217 code (upper
    case) the prices are in, as the source states it (minor units such as pence already
    converted, ``market/fx.py``); its default keeps the seed's constructor working.

    From a live source, for a symbol on an exchange calendar (``market/calendar.py``):
    ``market_open`` (whether its exchange was open when the quote was served),
    ``session_date`` (``YYYY-MM-DD``, the session the quote belongs to: the one under way, else
    the last one; ``previous_close`` is the close of the session before it), ``next_open`` (the
    next session's open, while closed) and ``estimated`` (the calendar's answer came from an
    estimate past the library's horizon). None (and False) otherwise: tick-addressed markets
    keep their own clock, and a symbol without a calendar counts as always open.
    """

    model_config = ConfigDict(frozen=True)

    symbol: str
    price: float
    volume: int
    timestamp: datetime
    high: float
    low: float
    open: float
    close: float
    source: str = "unknown"
    previous_close: float | None = None
    stale: bool = False
    age_s: float = 0.0
    currency: str = Field(
        default="USD",
        description="ISO 4217 code (upper case) the prices are in, as the source states it",
        examples=["USD", "INR", "GBP"],
    )
    market_open: bool | None = None
    session_date: str | None = None
    next_open: datetime | None = None
    estimated: bool = False
    splits: tuple[Split, ...] = Field(
        default=(),
        description=(
            "the splits the source reported with this quote (Yahoo: those in the chart it "
            "was read from, the last 5 days), oldest first; a jump between two observations "
            "is a split only when one of these confirms it (docs/alerts.md, Splits)"
        ),
    )

    def is_sane(self) -> bool:
        """Positive finite prices and high >= low."""
        nums = (self.price, self.high, self.low, self.open, self.close)
        if any(not math.isfinite(x) or x <= 0 for x in nums):
            return False
        return self.high >= self.low and self.volume >= 0


@dataclass(frozen=True, slots=True)
class Bar:
    """One daily bar. ``close`` is unadjusted (for values); ``adj_close`` feeds returns."""

    date: str  # YYYY-MM-DD
    open: float
    high: float
    low: float
    close: float
    adj_close: float
    volume: int


def quote_frame(quote: StockData) -> str:
    """``{"type": "quote", "symbol", "price", ..., "source", "stale", "age_s", "currency",
    "market_open", "session_date", "next_open", "estimated", "splits"}`` as JSON text."""
    return '{"type":"quote",' + quote.model_dump_json()[1:]
