"""Checks a quote must pass before anyone uses it (pure: the last good quote is an argument).

Symbols have their own rule in ``market/symbols.py``.
"""

from __future__ import annotations

import math

from marketpulse.errors import InvalidQuote
from marketpulse.market.quotes import StockData


def validate_quote(quote: StockData, last_good: StockData | None, max_jump: float = 100.0) -> None:
    """Raise ``InvalidQuote`` for non-positive or NaN prices, high < low, a negative volume, or
    a price ``max_jump`` times above or below the last good quote's."""
    if not quote.is_sane():
        raise InvalidQuote(
            f"{quote.symbol} from {quote.source}: insane quote price={quote.price} "
            f"high={quote.high} low={quote.low} open={quote.open} volume={quote.volume}"
        )
    if last_good is not None and last_good.price > 0 and math.isfinite(last_good.price):
        ratio = quote.price / last_good.price
        if ratio >= max_jump or ratio <= 1.0 / max_jump:
            raise InvalidQuote(
                f"{quote.symbol} from {quote.source}: price {quote.price} is a x{ratio:.4g} "
                f"jump against the last good {last_good.price}"
            )
