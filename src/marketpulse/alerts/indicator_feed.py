"""The indicator books of the symbols that have indicator alerts (the engine's IndicatorSource).

``IndicatorFeed(feed)`` keeps one ``IndicatorBook`` (``indicators.py``) per symbol whose
indicator alerts the engine names with ``want(symbol, specs)``; ``drop(symbol)`` (its last
indicator alert gone) removes the book, so the books are bounded by the symbols with indicator
alerts. ``await observe(quote)`` hands the quote's price to its symbol's book, as the live bar
of the quote's session, and answers the book (None: no indicator alert on the symbol, or no
history yet).

- A book is loaded once, at the first quote of its symbol after ``want``: from
  ``QuoteFeed.history(symbol, n)``, keeping the completed sessions before the quote's
  ``session_date`` (the UTC date of its timestamp when the quote has none: tick markets).
  ``n`` is ``history_bars(specs)``: four times the longest need, at least the 52 weeks, so the
  EMA's and Wilder's seeds have faded by the time a value is read; the book keeps only what
  its specs need.
- A history that cannot be had (``QuoteUnavailable``, ``ValidationFailed``, a bad bar) is
  logged, one WARNING per attempt, and tried again at a quote after a backoff (5 s doubling to
  5 min, ``infra/retry.py``'s ``Backoff``), not at every quote; meanwhile ``observe`` answers
  None (the alerts do nothing, as in warm-up).
- ``want`` with other specs than the book was loaded for drops the book: the next quote
  reloads it with the new specs (so a book never keeps series no alert reads).
- Observations of one symbol come in order, one at a time (the engine's per-symbol lock); a
  ``want`` or ``drop`` while a load is awaited wins: the loaded book is discarded.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC

from marketpulse.alerts.indicators import (
    WEEKS_52,
    IndicatorBook,
    IndicatorSpec,
    bars_needed,
    split_adjusted,
)
from marketpulse.errors import MarketDataError, ValidationFailed
from marketpulse.infra.retry import Backoff
from marketpulse.market.ports import QuoteFeed
from marketpulse.market.quotes import StockData

log = logging.getLogger(__name__)

RETRY = Backoff(base_s=5.0, cap_s=300.0, jitter=False)
HISTORY_FACTOR = 4  # bars loaded per bar needed, for the seeds of the EMA and RSI to fade
MAX_HISTORY = 2_000  # at most this many bars asked for


def history_bars(specs: Sequence[IndicatorSpec]) -> int:
    """Bars asked of the history for a book of ``specs`` (the quote's own session included,
    when the source returns it: it is cut off)."""
    need = max([WEEKS_52, *(bars_needed(s) for s in specs)])
    return min(MAX_HISTORY, max(WEEKS_52, HISTORY_FACTOR * need)) + 1


def session_of(quote: StockData) -> str:
    """The quote's session: its ``session_date``, else the UTC date of its timestamp."""
    if quote.session_date is not None:
        return quote.session_date
    return quote.timestamp.astimezone(UTC).date().isoformat()


def _key(spec: IndicatorSpec) -> tuple[str, int | None, int | None, int | None, str | None]:
    return (spec.kind, spec.period, spec.fast, spec.slow, spec.average)


@dataclass(slots=True)
class _Retry:
    attempts: int
    at: float  # monotonic time of the next attempt


class IndicatorFeed:
    """Indicator books per symbol with indicator alerts, loaded from ``feed``'s history."""

    def __init__(
        self,
        feed: QuoteFeed,
        *,
        retry: Backoff = RETRY,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._feed = feed
        self._retry_policy = retry
        self._now = monotonic
        self._specs: dict[str, tuple[IndicatorSpec, ...]] = {}  # symbol -> its alerts' specs
        self._books: dict[str, IndicatorBook] = {}  # only for symbols in _specs
        self._retry: dict[str, _Retry] = {}  # only for symbols in _specs
        self.loads = 0  # histories asked for (each failed attempt counts)

    # -- what is wanted --------------------------------------------------------------------

    def want(self, symbol: str, specs: Sequence[IndicatorSpec]) -> None:
        """The indicator specs of ``symbol``'s alerts, all of them (none: ``drop``). Raises
        ``ValueError`` for a spec that is not one (the rule model validates them first)."""
        if not specs:
            self.drop(symbol)
            return
        unique = tuple({_key(s): s for s in specs}.values())
        for spec in unique:
            bars_needed(spec)  # validates
        old = self._specs.get(symbol)
        if old is not None and {_key(s) for s in old} == {_key(s) for s in unique}:
            return
        self._specs[symbol] = unique
        self._books.pop(symbol, None)  # reloaded at the next quote, for these specs
        self._retry.pop(symbol, None)

    def drop(self, symbol: str) -> None:
        """``symbol`` has no indicator alert any more: its book and retry state go."""
        self._specs.pop(symbol, None)
        self._books.pop(symbol, None)
        self._retry.pop(symbol, None)

    def rebase(self, symbol: str, ratio: float) -> None:
        """A split of ``ratio`` took effect for ``symbol`` (the engine's split guard, before
        the quote that shows it): its loaded book is re-based (``IndicatorBook.rebase``). A
        book loaded later reads a split-adjusted history (``split_adjusted``)."""
        book = self._books.get(symbol)
        if book is not None:
            book.rebase(ratio)

    def symbols(self) -> list[str]:
        return sorted(self._specs)

    def book(self, symbol: str) -> IndicatorBook | None:
        """The loaded book of ``symbol`` (None before its first loaded quote)."""
        return self._books.get(symbol)

    def __len__(self) -> int:
        """Books held (at most the symbols with indicator alerts)."""
        return len(self._books)

    # -- quotes ----------------------------------------------------------------------------

    async def observe(self, quote: StockData) -> IndicatorBook | None:
        """``quote`` as the live bar of its session in its symbol's book; the book, or None
        (no indicator alert on the symbol, its history not had yet, a price not usable)."""
        symbol = quote.symbol
        specs = self._specs.get(symbol)
        if specs is None or not math.isfinite(quote.price) or quote.price <= 0:
            return None
        session = session_of(quote)
        book = self._books.get(symbol)
        if book is None:
            book = await self._load(symbol, specs, session)
            if book is None:
                return None
        book.observe(session, quote.price)
        return book

    async def _load(
        self, symbol: str, specs: tuple[IndicatorSpec, ...], session: str
    ) -> IndicatorBook | None:
        retry = self._retry.get(symbol)
        if retry is not None and self._now() < retry.at:
            return None
        self.loads += 1
        n = history_bars(specs)
        try:
            bars = await self._feed.history(symbol, n)
            closes = split_adjusted(bars, session)  # a split in the window: no false drop
            book = IndicatorBook(closes, specs=specs)
        except (MarketDataError, ValidationFailed, ValueError) as exc:
            if self._specs.get(symbol) is not specs:
                return None  # wanted otherwise meanwhile: the next quote tries afresh
            attempts = 1 if retry is None else retry.attempts + 1
            wait = self._retry_policy.delay(attempts)
            self._retry[symbol] = _Retry(attempts, self._now() + wait)
            message = exc.message if isinstance(exc, MarketDataError | ValidationFailed) else exc
            log.warning(
                "indicators of %s wait for a history (attempt %d; again in %.0f s): %s",
                symbol,
                attempts,
                wait,
                message,
            )
            return None
        if self._specs.get(symbol) is not specs:
            return None  # wanted otherwise or dropped meanwhile: this book is for old specs
        self._retry.pop(symbol, None)
        self._books[symbol] = book
        log.debug("indicators of %s loaded: %d closes before %s", symbol, len(closes), session)
        return book
