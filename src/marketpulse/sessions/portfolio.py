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
from dataclasses import dataclass, field

from marketpulse.errors import FxUnavailable
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


def canonical_map(values: Mapping[str, object]) -> str:
    """Sorted compact JSON of a small map (currencies, fx): equal maps give equal text."""
    return json.dumps({k: values[k] for k in sorted(values)}, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Valuation:
    """A portfolio valued at one market tick in its base currency; the text forms are what the
    session stores. ``prices`` are each instrument's own currency (``currencies``); ``fx`` maps
    each currency held to its rate into ``base_currency`` (the base itself at 1). ``flags``:
    ``fx_stale`` when a rate came from the offline reference rates."""

    tick: int
    total_value: float
    prices: Mapping[str, float]
    base_currency: str = "USD"
    currencies: Mapping[str, str] = field(default_factory=dict)
    fx: Mapping[str, float] = field(default_factory=dict)
    flags: tuple[str, ...] = ()

    @property
    def total_text(self) -> str:
        return json.dumps(self.total_value)

    @property
    def prices_text(self) -> str:
        return canonical_prices(self.prices)

    @property
    def currencies_text(self) -> str:
        return canonical_map(self.currencies)

    @property
    def fx_text(self) -> str:
        return canonical_map(self.fx)

    @property
    def flags_text(self) -> str:
        return json.dumps(sorted(self.flags), separators=(",", ":"))


def fx_needed(currencies: Mapping[str, str], base: str) -> set[str]:
    """The currencies whose rate into ``base`` a valuation needs (the base itself is 1)."""
    return {c for c in currencies.values() if c != base}


def total_in_base(
    holdings: Mapping[str, float],
    prices: Mapping[str, float],
    currencies: Mapping[str, str],
    fx: Mapping[str, float],
) -> float:
    """Σ q × price × fx[currency], rounded to cents. A missing rate raises FxUnavailable: an
    amount is never converted at 1:1 (nor left unconverted)."""
    missing = sorted({currencies[t] for t in holdings if currencies[t] not in fx})
    if missing:
        raise FxUnavailable(f"no exchange rate for {', '.join(missing)}")
    return round(math.fsum(q * prices[t] * fx[currencies[t]] for t, q in holdings.items()), 2)


def value(
    holdings: Mapping[str, float],
    prices: Mapping[str, float],
    tick: int,
    *,
    base_currency: str = "USD",
    currencies: Mapping[str, str] | None = None,
    fx: Mapping[str, float] | None = None,
    flags: tuple[str, ...] = (),
) -> Valuation:
    """Total market value of holdings at these prices, in ``base_currency`` (rounded to cents).

    ``currencies`` maps each holding to its price's currency (default: every one in the base);
    ``fx`` maps each of those currencies to its rate into the base. Raises FxUnavailable when a
    rate is missing."""
    mine = {t: float(prices[t]) for t in holdings}
    cur = {t: base_currency for t in holdings} if currencies is None else dict(currencies)
    rates = {base_currency: 1.0, **(fx or {})}
    rates = {c: rates[c] for c in sorted(set(cur.values())) if c in rates}
    total = total_in_base(holdings, mine, cur, rates)
    return Valuation(
        tick=tick,
        total_value=total,
        prices=mine,
        base_currency=base_currency,
        currencies={t: cur[t] for t in holdings},
        fx={base_currency: 1.0, **rates},
        flags=flags,
    )
