"""Session lifecycle: create, read, change holdings, delete (the logic behind the HTTP routes)."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from marketpulse.errors import QuoteUnavailable, ValidationFailed
from marketpulse.market.clock import MarketClock
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
from marketpulse.timefmt import iso_z, utc_now


class SessionService:
    def __init__(
        self,
        store: SessionStore,
        market: Market,
        clock: MarketClock,
        *,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
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

    async def _value(self, holdings: Mapping[str, float]) -> Valuation:
        unknown = [t for t in holdings if not self.market.knows(t)]
        if unknown:
            raise ValidationFailed(
                f"unknown ticker(s) for the {self.market.name} market: {', '.join(unknown)}",
                code="invalid_ticker",
            )
        tick = await self.current_tick()
        try:
            prices = await self.market.prices(holdings, tick)
        except QuoteUnavailable as exc:
            raise ValidationFailed(exc.message, code="invalid_ticker") from exc
        return value(holdings, prices, tick)

    async def create(
        self, session_id: str | None, raw_holdings: Mapping[str, float]
    ) -> tuple[str, str, dict[str, Any]]:
        """(session_id, token, state). Raises ValidationFailed, SessionExists."""
        sid = session_id if session_id is not None else secrets.token_urlsafe(12)
        if not SESSION_ID_RE.fullmatch(sid):
            raise ValidationFailed("session_id must be 1-64 characters of A-Z a-z 0-9 _ -")
        holdings = self.clean_holdings(raw_holdings)
        val = await self._value(holdings)
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
        th = hash_token(token)
        if not await self.store.verify(session_id, th):
            await self.store.read(session_id, th, iso_z(self.now()))  # raises SessionNotFound
        holdings = self.clean_holdings(raw_holdings)
        val = await self._value(holdings)
        now = iso_z(self.now())
        await self.store.set_holdings(session_id, th, holdings, val, now)
        return await self.store.read(session_id, th, now)

    async def delete(self, session_id: str, token: str) -> None:
        await self.store.delete(session_id, hash_token(token))
