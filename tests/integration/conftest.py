"""Fixtures of the integration tests that talk to the local market server (recorded Yahoo and
NSE responses served on loopback, ``tests/support/market_server.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from marketpulse.market.providers.yahoo import YahooProvider
from support.market_server import MarketServer, redirecting_session


@pytest.fixture
async def market_server() -> AsyncIterator[MarketServer]:
    srv = MarketServer()
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def yahoo(market_server: MarketServer) -> AsyncIterator[YahooProvider]:
    """The Yahoo provider, its requests redirected to the market server."""
    provider = YahooProvider(session=redirecting_session(market_server.url), timeout_s=10.0)
    try:
        yield provider
    finally:
        await provider.close()
