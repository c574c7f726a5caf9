"""The yahoo (yfinance) and nse providers against recorded responses on a local server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from marketpulse.errors import PermanentSourceError, TransientSourceError
from marketpulse.market.providers.nse import NseProvider
from marketpulse.market.providers.yahoo import YahooProvider
from support.market_server import Fault, MarketServer


@pytest.fixture
def server(market_server: MarketServer) -> MarketServer:
    return market_server


@pytest.fixture
async def nse(server: MarketServer) -> AsyncIterator[NseProvider]:
    provider = NseProvider(server.url, timeout_s=5.0)
    try:
        yield provider
    finally:
        await provider.close()


async def test_nse_next_api_quote_after_cookie_warm_up(
    nse: NseProvider, server: MarketServer
) -> None:
    q = await nse.quote("HDFCBANK.NS", 0)
    assert (q.symbol, q.price, q.volume) == ("HDFCBANK.NS", 764.9, 24095932)
    assert (q.open, q.high, q.low, q.previous_close) == (769.5, 773.9, 761.25, 778.9)
    assert q.timestamp == datetime(2026, 5, 27, 5, 37, 9, tzinfo=UTC)  # 11:07:09 IST
    assert q.source == "nse"
    assert server.requests[0][0] == "/"
    api_path, cookies = server.requests[1]
    assert "functionName=getSymbolData" in api_path
    assert "symbol=HDFCBANK" in api_path
    assert cookies.get("nsit") == "warm"


async def test_nse_falls_back_to_legacy_quote_equity(nse: NseProvider) -> None:
    q = await nse.quote("INFY", 0)
    assert (q.price, q.open, q.high, q.low, q.previous_close) == (
        1432.95, 1432.1, 1443.6, 1430.0, 1431.15,
    )  # fmt: skip
    assert q.volume > 0  # from the trade_info section
    assert q.timestamp == datetime(2023, 10, 16, 10, 30, tzinfo=UTC)


async def test_nse_unknown_and_bse_symbols_are_permanent(nse: NseProvider) -> None:
    with pytest.raises(PermanentSourceError):
        await nse.quote("NOSUCH", 0)
    with pytest.raises(PermanentSourceError):
        await nse.quote("TCS.BO", 0)


async def test_nse_rate_limit_is_transient_with_retry_after(
    nse: NseProvider, server: MarketServer
) -> None:
    server.faults.append(Fault(429, "Edge: Too Many Requests", {"Retry-After": "7"}))
    with pytest.raises(TransientSourceError) as info:
        await nse.quote("HDFCBANK", 0)
    assert info.value.retry_after == 7.0


async def test_yahoo_quote_from_recorded_chart(yahoo: YahooProvider) -> None:
    q = await yahoo.quote("MSFT", 0)
    assert (q.price, q.volume, q.high, q.low) == (541.55, 33295714, 546.27, 536.729)
    assert q.previous_close is not None
    assert q.previous_close == q.close
    assert q.timestamp == datetime.fromtimestamp(1761768001, UTC)
    assert q.source == "yahoo"


async def test_yahoo_nse_symbol_with_a_trading_session_in_progress(yahoo: YahooProvider) -> None:
    q = await yahoo.quote("TCS.NS", 0)
    assert q.price == 2114.4
    assert q.previous_close == pytest.approx(2075.0)  # the null last close and null row skipped


async def test_yahoo_history_daily_bars_oldest_first(yahoo: YahooProvider) -> None:
    bars = await yahoo.history("MSFT", 0, 253)
    assert len(bars) == 127
    assert bars[0].date == "2025-04-30"
    assert bars[-1].date == "2025-10-29"
    assert all(b.adj_close > 0 for b in bars)
    assert len(await yahoo.history("MSFT", 0, 20)) == 20


async def test_yahoo_unknown_symbol_is_permanent(yahoo: YahooProvider) -> None:
    with pytest.raises(PermanentSourceError):
        await yahoo.quote("SIX", 0)


async def test_yahoo_rate_limit_is_transient(yahoo: YahooProvider, server: MarketServer) -> None:
    server.faults.extend([Fault(429, "Edge: Too Many Requests")] * 4)
    with pytest.raises(TransientSourceError):
        await yahoo.quote("MSFT", 0)


async def test_yahoo_failed_time_zone_lookup_is_not_remembered(
    yahoo: YahooProvider, server: MarketServer
) -> None:
    # A symbol whose zone yfinance does not know: it asks with a range=1d chart request first.
    server.any_chart_is = "yahoo_chart_MSFT_1d_6mo_2025-10-29.json"
    server.faults.append(Fault(200, "<html>busy</html>"))
    with pytest.raises(TransientSourceError):
        await yahoo.quote("COLDTZ", 0)
    lookups = [p for p, _ in server.requests if p.startswith("/v8/finance/chart/COLDTZ")]
    assert len(lookups) == 1
    assert "range=1d" in lookups[0]
    q = await yahoo.quote("COLDTZ", 0)  # yfinance memoized the failed answer; we dropped it
    assert q.price == 541.55
