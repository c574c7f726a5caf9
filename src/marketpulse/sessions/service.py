"""Session lifecycle: create, read, change holdings, delete (the logic behind the HTTP routes)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from marketpulse.errors import QuoteUnavailable, RedisUnavailable, SessionBusy, ValidationFailed
from marketpulse.market.clock import MarketClock
from marketpulse.market.fx import BASE_CURRENCIES, is_base_currency, is_currency
from marketpulse.market.symbols import check_symbol
from marketpulse.market.view import Market
from marketpulse.sessions.portfolio import (
    MAX_HOLDINGS,
    SESSION_ID_RE,
    Valuation,
    holdings_problem,
    quantity_problem,
    value,
)
from marketpulse.sessions.store import SessionStore, hash_token
from marketpulse.sessions.watch import PortfolioWatch
from marketpulse.timefmt import iso_z, utc_now

log = logging.getLogger(__name__)

_BASIS_TRIES = 3  # values of a holdings or base change raced by a concurrent one


class SessionService:
    def __init__(
        self,
        store: SessionStore,
        market: Market,
        clock: MarketClock,
        *,
        now: Callable[[], datetime] = utc_now,
        base_currency: str = "USD",
        watch: PortfolioWatch | None = None,
    ) -> None:
        self.base_currency = base_currency
        self.watch = watch  # told a deleted session (its portfolio alerts go with it)
        self.store = store
        self.market = market
        self.clock = clock
        self.now = now

    def clean_holdings(self, raw: Mapping[str, float]) -> dict[str, float]:
        """Upper-cased tickers and positive quantities, or ValidationFailed.

        Tickers and quantities are checked as sent (the HTTP API's schema says the same); one
        ticker written twice (``aapl`` and ``AAPL``) holds the sum."""
        if len(raw) > MAX_HOLDINGS:
            raise ValidationFailed(f"at most {MAX_HOLDINGS} holdings")
        holdings: dict[str, float] = {}
        for name, qty in raw.items():
            ticker = check_symbol(name, code="invalid_ticker", exact=True)
            problem = quantity_problem(ticker, qty)
            if problem:
                raise ValidationFailed(problem)
            holdings[ticker] = holdings.get(ticker, 0.0) + float(qty)
        problem = holdings_problem(holdings)
        if problem:
            raise ValidationFailed(problem)
        return holdings

    async def current_tick(self) -> int:
        return await self.clock.tick()

    def clean_currency(self, raw: str | None) -> str:
        """The ISO 4217 code as sent (upper case, like every input of the API: taken as sent),
        the default base when None; ValidationFailed (``invalid_currency``) otherwise."""
        if raw is None:
            return self.base_currency
        code = raw if isinstance(raw, str) else ""
        if not is_base_currency(code):
            known = "an ISO 4217 code" if is_currency(code) else "not an ISO 4217 code"
            raise ValidationFailed(
                f"{raw!r} cannot be a base currency ({known}); choose one of "
                f"{', '.join(sorted(BASE_CURRENCIES))}",
                code="invalid_currency",
            )
        return code

    async def _value(self, holdings: Mapping[str, float], base: str) -> Valuation:
        """The holdings valued now in ``base``: each holding's currency is its quote's, each
        rate the market's. Raises ValidationFailed (a ticker without a price) or FxUnavailable
        (a rate no source has: never valued at 1:1)."""
        unknown = [t for t in holdings if not self.market.knows(t)]
        if unknown:
            raise ValidationFailed(
                f"unknown ticker(s) for the {self.market.name} market: {', '.join(unknown)}",
                code="invalid_ticker",
            )
        tick = await self.current_tick()
        try:
            priced = await self.market.priced(holdings, tick)
        except QuoteUnavailable as exc:
            raise ValidationFailed(exc.message, code="invalid_ticker") from exc
        currencies = {t: priced[t].currency for t in holdings}
        rates = await self.market.rates(currencies.values(), base, tick)
        return value(
            holdings,
            {t: priced[t].price for t in holdings},
            tick,
            base_currency=base,
            currencies=currencies,
            fx=rates.rates,
            flags=("fx_stale",) if rates.stale else (),
        )

    async def create(
        self,
        session_id: str | None,
        raw_holdings: Mapping[str, float],
        base_currency: str | None = None,
    ) -> tuple[str, str, dict[str, Any]]:
        """(session_id, token, state). Raises ValidationFailed, SessionExists, FxUnavailable."""
        sid = session_id if session_id is not None else secrets.token_urlsafe(12)
        if not SESSION_ID_RE.fullmatch(sid):
            raise ValidationFailed("session_id must be 1-64 characters of A-Z a-z 0-9 _ -")
        holdings = self.clean_holdings(raw_holdings)
        base = self.clean_currency(base_currency)
        val = await self._value(holdings, base)
        token = secrets.token_urlsafe(32)
        th = hash_token(token)
        now = iso_z(self.now())
        await self.store.create(sid, th, holdings, val, now)
        return sid, token, await self.store.read(sid, th, now)

    async def read(self, session_id: str, token: str) -> dict[str, Any]:
        return await self.store.read(session_id, hash_token(token), iso_z(self.now()))

    async def set_holdings(
        self, session_id: str, token: str, raw_holdings: Mapping[str, float]
    ) -> dict[str, Any]:
        """New holdings valued in the session's base currency. Raises ValidationFailed,
        SessionNotFound, FxUnavailable."""
        th = hash_token(token)
        holdings = self.clean_holdings(raw_holdings)
        return await self._revalue_basis(session_id, th, lambda state: (holdings, None))

    async def set_base_currency(
        self, session_id: str, token: str, raw_currency: str
    ) -> dict[str, Any]:
        """The same holdings valued in a new base currency: a basis change (a running analysis
        restarts on it). Raises ValidationFailed (``invalid_currency``), SessionNotFound,
        FxUnavailable."""
        th = hash_token(token)
        base = self.clean_currency(raw_currency)
        return await self._revalue_basis(session_id, th, lambda state: (state["holdings"], base))

    async def _revalue_basis(
        self,
        session_id: str,
        th: str,
        change: Callable[[dict[str, Any]], tuple[dict[str, float], str | None]],
    ) -> dict[str, Any]:
        """Apply ``change`` (state -> new holdings, new base or None to keep it): value the
        result and store it only if what it was computed from is still stored; a concurrent
        change of holdings or base sends it round again (bounded), so neither is lost."""
        for _ in range(_BASIS_TRIES):
            state = await self.store.read(session_id, th, iso_z(self.now()))
            holdings, new_base = change(state)
            base = new_base or state["base_currency"]
            val = await self._value(holdings, base)
            now = iso_z(self.now())
            # a new base is computed from these holdings; new holdings in this base
            expect_holdings = state["holdings"] if new_base is not None else None
            expect_base = state["base_currency"] if new_base is None else None
            done = await self.store.set_holdings(
                session_id, th, holdings, val, now,
                expect_holdings=expect_holdings, expect_base=expect_base,
            )  # fmt: skip
            if done is not None:
                return await self.store.read(session_id, th, now)
        raise SessionBusy("the portfolio kept changing while it was valued; try again")

    async def delete(self, session_id: str, token: str) -> None:
        await self.store.delete(session_id, hash_token(token))
        if self.watch is not None:
            try:
                await self.watch.deleted(session_id)
            except RedisUnavailable as exc:  # the session is deleted: its alerts' keys expire
                log.warning("portfolio alerts of deleted session %s kept until their TTL: %s",
                            session_id, exc.message)  # fmt: skip
