"""Splits as the alert engine sees them (pure): when a jump is a split, and what it re-bases.

A quote carries the splits its source reported (``StockData.splits``, ``market/quotes.py``).
A jump between two consecutive observations of a symbol is a split only when it is *confirmed*:
a reported split of ratio ``r`` has its ex-date after the earlier observation's day and at or
before the later one's, and the jump ``previous price / price`` matches ``r`` (``matches``).
An unconfirmed jump stays what it is: an ordinary price move (which may fire alerts).

Tolerance (``matches``): the jump of a split is ``r`` times the market's own move between the
two observations, ``jump = r / (1 + R)``. We accept ``|ln(jump / r)| <= min(ln 1.25,
|ln r| / 2)``:

- ``ln 1.25``: a real move of -20 % .. +25 % across the split is allowed; a larger one on the
  ex-date is rarer than the harm of a wrong re-base, so it is left unconfirmed (today's
  behaviour: the alerts fire as for any move);
- ``|ln r| / 2``: the jump must be nearer (in log terms) to "split seen" (``r``) than to "no
  jump" (1), so a source that already adjusted both prices (Yahoo's adjusted history) is never
  taken for a split, even for a 5:4 split (``ln 1.25 / 2``, about ±11 %).

What a confirmed split of ratio ``r`` re-bases (``rebased``): a price threshold ``T`` becomes
``T / r`` (an indicator of price level, ``sma``/``ema``, likewise once rule alerts exist: the
hook is marked below); percentage-change and volume-spike thresholds are ratios and keep their
value. The volume baseline is multiplied by ``r`` (in the store), and the quote's previous close,
when it is the pre-split one (it matches ``r`` too: tick sources do not adjust it), is divided
by ``r`` for the evaluation of that quote (``rebased_quote``).
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from marketpulse.alerts.rules import AlertCondition, AlertType, Indicator
from marketpulse.market.quotes import Split, StockData

MAX_MOVE = 1.25  # the market's own move across a split we still confirm: -20 % .. +25 %


def quote_day(quote: StockData) -> str:
    """The session a quote belongs to (``session_date``, else its UTC date), ``YYYY-MM-DD``."""
    return quote.session_date or quote.timestamp.date().isoformat()


def matches(jump: float, ratio: float) -> bool:
    """Whether a price jump (``earlier price / later price``) is a split of ``ratio``."""
    if not (math.isfinite(jump) and jump > 0 and math.isfinite(ratio) and ratio > 0):
        return False
    if ratio == 1.0:
        return False
    off = abs(math.log(jump / ratio))
    return off <= min(math.log(MAX_MOVE), abs(math.log(ratio)) / 2)


def confirm(
    quote: StockData, previous_price: float | None, previous_day: str | None
) -> Split | None:
    """The split of ``quote.splits`` that explains the jump from the previous observation
    (its price and day), or None: none reported in between, or the jump does not match."""
    if previous_price is None or previous_day is None or not quote.splits:
        return None
    day = quote_day(quote)
    jump = previous_price / quote.price
    for split in quote.splits:
        if previous_day < split.date <= day and matches(jump, split.ratio):
            return split
    return None


def _in_price(alert_type: AlertType, indicator: Indicator | None) -> bool:
    """Whether a threshold of this kind is a price (re-based by a split): the price itself and
    an average's level (``sma``, ``ema``); every other kind is a ratio or a percentage."""
    if alert_type is AlertType.PRICE_THRESHOLD:
        return True
    return indicator is not None and indicator.kind in ("sma", "ema")


def rebased(alert: AlertCondition, ratio: float) -> AlertCondition | None:
    """``alert`` in post-split units (a split of ``ratio``), or None when nothing in it is a
    price (percentage change, volume spike, RSI, the relative indicators are ratios): a price
    threshold and its re-arm margin are divided by the ratio, for the alert and for each
    ``all_of`` clause of a price kind."""
    if _in_price(alert.alert_type, alert.indicator):
        return alert.model_copy(
            update={
                "threshold": alert.threshold / ratio,
                "rearm_margin": alert.rearm_margin / ratio,
            }
        )
    if alert.all_of is None or not any(_in_price(c.alert_type, c.indicator) for c in alert.all_of):
        return None
    clauses = tuple(
        c.model_copy(
            update={"threshold": c.threshold / ratio, "rearm_margin": c.rearm_margin / ratio}
        )
        if _in_price(c.alert_type, c.indicator)
        else c
        for c in alert.all_of
    )
    return alert.model_copy(update={"all_of": clauses})


def rebased_quote(quote: StockData, split: Split) -> StockData:
    """``quote`` as evaluated at its split's observation: a previous close that is still the
    pre-split one (it matches the ratio against the price) divided by the ratio."""
    prev = quote.previous_close
    if prev is None or not matches(prev / quote.price, split.ratio):
        return quote
    return quote.model_copy(
        update={"previous_close": prev / split.ratio, "close": quote.close / split.ratio}
    )


class Rebased(BaseModel):
    """One alert a split re-based."""

    model_config = ConfigDict(frozen=True)

    alert_id: str
    threshold_before: float
    threshold_after: float


class CorporateAction(BaseModel):
    """A corporate action the engine applied (a history entry of kind ``corporate_action``,
    also published for the dashboards). ``observation`` and ``at`` are the observation that
    confirmed it; ``rebased`` lists the alerts whose thresholds were rewritten."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["corporate_action"] = "corporate_action"
    action: Literal["split"] = "split"
    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    symbol: str
    split_date: str
    ratio: float
    observation: int
    at: datetime
    price_before: float
    price_after: float
    volume_factor: float
    rebased: list[Rebased] = Field(default_factory=list)

    @classmethod
    def split(
        cls, quote: StockData, split: Split, observation: int, previous_price: float
    ) -> CorporateAction:
        return cls(
            symbol=quote.symbol,
            split_date=split.date,
            ratio=split.ratio,
            observation=observation,
            at=quote.timestamp,
            price_before=previous_price,
            price_after=quote.price,
            volume_factor=split.ratio,
        )

    def describe(self) -> str:
        return (
            f"SPLIT {self.symbol} {self.ratio:g}:1 on {self.split_date}: price "
            f"{self.price_before:g} -> {self.price_after:g}, {len(self.rebased)} alert(s) "
            f"re-based, volume baseline x{self.volume_factor:g}"
        )
