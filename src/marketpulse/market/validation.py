"""Checks a quote must pass before anyone uses it (pure: the last good quote is an argument)."""

from __future__ import annotations

import math
import re

from marketpulse.errors import InvalidQuote, ValidationFailed
from marketpulse.market.quotes import StockData

SYMBOL_RE = re.compile(r"^[A-Z0-9][A-Z0-9.\-^=&]{0,19}$")


def check_symbol(symbol: str) -> str:
    """The symbol, upper-cased, or ``ValidationFailed`` (code ``invalid_symbol``)."""
    norm = symbol.strip().upper()
    if not SYMBOL_RE.fullmatch(norm):
        raise ValidationFailed(
            f"invalid symbol {symbol[:40]!r}: 1-20 of A-Z 0-9 . - ^ = &", code="invalid_symbol"
        )
    return norm


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
