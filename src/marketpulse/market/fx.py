"""Currencies and exchange-rate symbols (pure, no I/O).

An exchange rate is a quote of a **pair symbol**, Yahoo's convention: ``f"{ccy}{base}=X"`` is
the price of one unit of ``ccy`` in ``base`` (``USDINR=X`` ≈ 84 rupees per dollar,
``EURUSD=X`` ≈ 1.08 dollars per euro). Yahoo's short form ``INR=X`` is ``USDINR=X``. Rates
therefore travel through the same fetcher, cache, retry and breaker as any quote.

Every quote states its currency as an upper-case ISO 4217 code. Sources that price in a minor
unit (London's pence ``GBp``/``GBX``, Johannesburg's cents ``ZAc``, Tel Aviv's agorot ``ILA``)
are normalised here: ``normalise_currency`` gives the ISO code and the divisor to apply.
"""

from __future__ import annotations

import re

from marketpulse.errors import ValidationFailed

# ISO 4217 active codes (2025), plus the retired codes the ECB reference file still carries
# (CYP, EEK, HRK, LTL, LVL, MTL, ROL, SIT, SKK, TRL), so a rate the reference rates can give is
# never refused as "not a currency". Funds codes (BOV, CHE, ...) are kept: they are ISO codes.
KNOWN_CURRENCIES: frozenset[str] = frozenset(
    {
        "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
        "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD",
        "CAD", "CDF", "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUC", "CUP",
        "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP",
        "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS",
        "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW",
        "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD",
        "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN",
        "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR",
        "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SLL",
        "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY",
        "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED", "VES",
        "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG", "ZWL",
        "CYP", "EEK", "HRK", "LTL", "LVL", "MTL", "ROL", "SIT", "SKK", "TRL",
    }
)  # fmt: skip

# Minor units as sources write them -> (ISO code, units per major unit). Checked on the code as
# written first: "GBp" (pence) and "GBP" (pounds) differ only by case.
_MINOR_AS_WRITTEN: dict[str, tuple[str, float]] = {"GBp": ("GBP", 100.0), "ZAc": ("ZAR", 100.0)}
_MINOR_UPPER: dict[str, tuple[str, float]] = {
    "GBX": ("GBP", 100.0),
    "ZAC": ("ZAR", 100.0),
    "ILA": ("ILS", 100.0),
}

# The simulator's guess of a listing's currency from its exchange suffix (Yahoo's suffixes).
SUFFIX_CURRENCY: dict[str, str] = {
    "NS": "INR", "BO": "INR",
    "L": "GBP", "IL": "GBP",
    "DE": "EUR", "F": "EUR", "PA": "EUR", "AS": "EUR", "MI": "EUR", "MC": "EUR", "BR": "EUR",
    "LS": "EUR", "VI": "EUR", "HE": "EUR", "IR": "EUR",
    "T": "JPY", "HK": "HKD", "TO": "CAD", "V": "CAD", "AX": "AUD", "NZ": "NZD", "SW": "CHF",
    "SI": "SGD", "KS": "KRW", "KQ": "KRW", "SS": "CNY", "SZ": "CNY", "JO": "ZAR", "TA": "ILS",
    "ST": "SEK", "CO": "DKK", "OL": "NOK", "SA": "BRL", "MX": "MXN", "TW": "TWD", "WA": "PLN",
}  # fmt: skip

_PAIR_RE = re.compile(r"^([A-Z]{3})?([A-Z]{3})=X$")


BASE_CURRENCIES: frozenset[str] = frozenset(
    [
        "AUD",
        "BRL",
        "CAD",
        "CHF",
        "CNY",
        "CZK",
        "DKK",
        "EUR",
        "GBP",
        "HKD",
        "HUF",
        "IDR",
        "ILS",
        "INR",
        "ISK",
        "JPY",
        "KRW",
        "MXN",
        "MYR",
        "NOK",
        "NZD",
        "PHP",
        "PLN",
        "RON",
        "SEK",
        "SGD",
        "THB",
        "TRY",
        "USD",
        "ZAR",
    ]
)
"""The currencies a portfolio may be valued in: those the offline reference rates still
publish, so that a rate into the base exists even when every live source fails (the simulated
FX walk knows each of them too). ``tests/unit/test_fx.py`` checks both."""


def is_base_currency(code: str) -> bool:
    """Whether a portfolio may be valued in ``code`` (see ``BASE_CURRENCIES``)."""
    return code in BASE_CURRENCIES


def is_currency(code: str) -> bool:
    """True for an upper-case ISO 4217 code this service knows (``KNOWN_CURRENCIES``)."""
    return code in KNOWN_CURRENCIES


def pair_symbol(ccy: str, base: str) -> str:
    """The symbol of the price of one ``ccy`` in ``base``: ``("INR", "USD")`` → ``"INRUSD=X"``.

    Raises ``ValueError`` when either is not a known currency code."""
    for code in (ccy, base):
        if not is_currency(code):
            raise ValueError(f"not a currency code: {code!r}")
    return f"{ccy}{base}=X"


def parse_pair(symbol: str) -> tuple[str, str] | None:
    """``(ccy, base)`` of a pair symbol, or None when ``symbol`` is not one.

    ``"USDINR=X"`` → ``("USD", "INR")``; Yahoo's short form ``"INR=X"`` → ``("USD", "INR")``;
    case-insensitive; both codes must be known currencies."""
    m = _PAIR_RE.fullmatch(symbol.strip().upper())
    if m is None:
        return None
    ccy, base = m.group(1) or "USD", m.group(2)
    if not (is_currency(ccy) and is_currency(base)):
        return None
    return ccy, base


def normalise_currency(raw: str | None) -> tuple[str, float]:
    """``(ISO code, divisor)`` of a currency as a source states it; prices divided by the
    divisor are in the ISO currency's major unit.

    ``"GBp"``/``"GBX"`` → ``("GBP", 100.0)``, ``"ZAc"``/``"ZAC"`` → ``("ZAR", 100.0)``,
    ``"ILA"`` → ``("ILS", 100.0)``, ``"usd"`` → ``("USD", 1.0)``. A missing or unknown
    currency raises ``ValidationFailed`` (``invalid_currency``): a quote that does not state its
    currency is not a good quote."""
    if not isinstance(raw, str) or not raw.strip():
        raise ValidationFailed("the source states no currency", code="invalid_currency")
    text = raw.strip()
    minor = _MINOR_AS_WRITTEN.get(text) or _MINOR_UPPER.get(text.upper())
    if minor is not None:
        return minor
    code = text.upper()
    if not is_currency(code):
        raise ValidationFailed(f"unknown currency {text[:16]!r}", code="invalid_currency")
    return code, 1.0


def currency_for_suffix(symbol: str) -> str:
    """The simulator's guess of a symbol's currency (only a guess: real sources state it).

    A pair symbol → its quote currency (``USDINR=X`` → INR); ``.NS``/``.BO`` → INR; no
    suffix → USD; another suffix from ``SUFFIX_CURRENCY`` (``.L`` GBP, ``.DE`` EUR, ``.T``
    JPY, ...); an unknown suffix → USD."""
    pair = parse_pair(symbol)
    if pair is not None:
        return pair[1]
    sym = symbol.strip().upper()
    if "." not in sym:
        return "USD"
    return SUFFIX_CURRENCY.get(sym.rsplit(".", 1)[1], "USD")
