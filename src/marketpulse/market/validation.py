"""Checks a quote must pass before anyone uses it (pure: the last good quote is an argument).

Symbols have their own rule in ``market/symbols.py``.
"""

from __future__ import annotations

import math

from marketpulse.errors import InvalidQuote
from marketpulse.market.quotes import StockData


def validate_quote(quote: StockData, last_good: StockData | None, max_jump: float = 100.0) -> None:
    """Raise ``InvalidQuote`` for non-positive or NaN prices, high < low, a negative volume, a
    source that switched currency since the last good quote, or a price ``max_jump`` times
    above or below the last good quote's in the same currency.

    A source switching currency is refused rather than compared: pence against pounds is not a
    price move. Two sources that disagree (NSE's INR against the simulator's guess of USD for a
    symbol without a suffix) are not refused, as the last good quote never expires and a
    refusal would lock the symbol to whichever answered first; their prices are then not
    compared either. A last good quote that never stated its currency (cached before quotes
    carried one, or built without it) is compared on price only.
    """
    if not quote.is_sane():
        raise InvalidQuote(
            f"{quote.symbol} from {quote.source}: insane quote price={quote.price} "
            f"high={quote.high} low={quote.low} open={quote.open} volume={quote.volume}"
        )
    if last_good is None or not math.isfinite(last_good.price) or last_good.price <= 0:
        return
    if "currency" in last_good.model_fields_set and last_good.currency != quote.currency:
        if last_good.source == quote.source:
            raise InvalidQuote(
                f"{quote.symbol} from {quote.source}: priced in {quote.currency}, its last "
                f"good quote in {last_good.currency}"
            )
        return  # another source's currency: its prices are not comparable
    ratio = quote.price / last_good.price
    if ratio >= max_jump or ratio <= 1.0 / max_jump:
        raise InvalidQuote(
            f"{quote.symbol} from {quote.source}: price {quote.price} is a x{ratio:.4g} "
            f"jump against the last good {last_good.price}"
        )
