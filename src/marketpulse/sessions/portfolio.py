"""Portfolio valuation and the canonical text forms the session state stores (pure).

Prices and totals are serialised here, once, in Python: the Lua scripts only compare and copy
these strings (Lua's cjson would keep 14 significant digits), so a revaluation that changes
nothing produces byte-identical text and bumps nothing.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from marketpulse.market.symbols import normalize_symbol

# used with fullmatch, never match: ``$`` lets a trailing newline through
SESSION_ID_PATTERN = r"^[A-Za-z0-9_\-]{1,64}$"
SESSION_ID_RE = re.compile(SESSION_ID_PATTERN)
MAX_HOLDINGS = 100
MAX_QUANTITY = 1e12  # shares of one ticker; keeps every valuation a finite number


def quantity_problem(ticker: str, qty: float) -> str | None:
    """Why this quantity of ``ticker`` is unacceptable, or None."""
    if not math.isfinite(qty) or qty <= 0:
        return f"quantity of {ticker} must be a positive number"
    if qty > MAX_QUANTITY:
        return f"quantity of {ticker} must be at most {MAX_QUANTITY:.0e}"
    return None


def holdings_problem(holdings: Mapping[str, float]) -> str | None:
    """Why these holdings are unacceptable, or None."""
    if not holdings:
        return "holdings must name at least one ticker"
    if len(holdings) > MAX_HOLDINGS:
        return f"at most {MAX_HOLDINGS} holdings"
    for ticker, qty in holdings.items():
        if normalize_symbol(ticker) != ticker:
            return f"invalid ticker {ticker!r}"
        if not math.isfinite(qty) or qty <= 0:
            return f"quantity of {ticker} must be a positive number"
    return None


def canonical_holdings(holdings: Mapping[str, float]) -> str:
    return json.dumps({t: holdings[t] for t in sorted(holdings)}, separators=(",", ":"))


def canonical_prices(prices: Mapping[str, float]) -> str:
    return json.dumps({t: prices[t] for t in sorted(prices)}, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Valuation:
    """A portfolio valued at one market tick; the text forms are what the session stores."""

    tick: int
    total_value: float
    prices: Mapping[str, float]

    @property
    def total_text(self) -> str:
        return json.dumps(self.total_value)

    @property
    def prices_text(self) -> str:
        return canonical_prices(self.prices)


def value(holdings: Mapping[str, float], prices: Mapping[str, float], tick: int) -> Valuation:
    """Total market value (rounded to cents) of holdings at these prices."""
    mine = {t: float(prices[t]) for t in holdings}
    total = round(math.fsum(holdings[t] * mine[t] for t in holdings), 2)
    return Valuation(tick=tick, total_value=total, prices=mine)
