"""What a ticker symbol is: the one rule every surface applies (pure).

A symbol is 1-20 characters of ``A-Z 0-9 . - ^ = &`` that does not start with ``.``, ``-``,
``=`` or ``&`` (``AAPL``, ``TCS.NS``, ``M&M.NS``, ``^GSPC``, ``EURUSD=X``), compared
upper-cased. Sessions (holdings, ``analyze``), alerts, the watchlist setting, the fetcher and
the sources all apply it, in one of three forms: ``normalize_symbol`` (the symbol or None),
``check_symbol`` (``ValidationFailed`` with the surface's error code) and ``parse_symbol``
(``ValueError``, for pydantic validators). The dashboard keeps a copy of ``SYMBOL_PATTERN`` in
``static/js/dom.js`` (a test holds the two equal).

The rule is checked on the symbol as written, letters of either case (``INPUT_PATTERN``), and
then upper-cased: upper-casing first would let non-ASCII letters in (``ß`` becomes ``SS``).
Space around it is dropped, except with ``exact=True``: the HTTP API, whose OpenAPI
description quotes ``INPUT_PATTERN`` and takes a symbol exactly as sent.
"""

from __future__ import annotations

import re

from marketpulse.errors import ValidationFailed

SYMBOL_PATTERN = r"^[A-Z0-9^][A-Z0-9.\-^=&]{0,19}$"  # the canonical (upper-cased) form
SYMBOL_RE = re.compile(SYMBOL_PATTERN)
INPUT_PATTERN = r"^[A-Za-z0-9^][A-Za-z0-9.\-^=&]{0,19}$"  # as written, before upper-casing
INPUT_RE = re.compile(INPUT_PATTERN)
SYMBOL_RULE = "1-20 of A-Z 0-9 . - ^ = & (e.g. AAPL, TCS.NS, M&M.NS)"
INPUT_RULE = "1-20 of A-Z a-z 0-9 . - ^ = & (upper-cased), e.g. AAPL, tcs.ns, M&M.NS"


def normalize_symbol(raw: object, *, exact: bool = False) -> str | None:
    """The symbol upper-cased (and stripped, unless ``exact``) if it is one, else None."""
    if not isinstance(raw, str):
        return None
    sym = raw if exact else raw.strip()
    return sym.upper() if INPUT_RE.fullmatch(sym) else None


def symbol_problem(raw: object) -> str:
    """Why ``raw`` is not a symbol, for an error message."""
    shown = raw[:40] if isinstance(raw, str) else raw
    return f"invalid symbol {shown!r}: {SYMBOL_RULE}"


def parse_symbol(raw: object, *, exact: bool = False) -> str:
    """The normalised symbol, or ``ValueError`` (for pydantic validators)."""
    sym = normalize_symbol(raw, exact=exact)
    if sym is None:
        raise ValueError(symbol_problem(raw))
    return sym


def check_symbol(raw: object, code: str = "invalid_symbol", *, exact: bool = False) -> str:
    """The normalised symbol, or ``ValidationFailed`` with ``code``."""
    sym = normalize_symbol(raw, exact=exact)
    if sym is None:
        raise ValidationFailed(symbol_problem(raw), code=code)
    return sym
