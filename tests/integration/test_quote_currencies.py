"""Every quote carries its currency; exchange rates are quotes of pair symbols, down to the
ECB reference rates as the last resort (recorded Yahoo and NSE responses on a local server)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI

from marketpulse.config import Settings
from marketpulse.errors import InvalidQuote, PermanentSourceError, QuoteUnavailable
from marketpulse.infra.http_errors import install_error_handlers
from marketpulse.market.clock import ManualClock
from marketpulse.market.fetcher import DataFetcher, providers_for
from marketpulse.market.http import router
from marketpulse.market.providers.nse import NseProvider
from marketpulse.market.providers.reference_rates import ReferenceRates
from marketpulse.market.providers.simulated import SimulatedSource
from marketpulse.market.providers.tick_provider import TickQuoteProvider
from marketpulse.market.providers.yahoo import YahooProvider, chart_currency
from marketpulse.market.quotes import Bar, StockData, quote_frame
from support.asgi import with_state
from support.market_server import CHARTS, Fault, MarketServer, fixture


@pytest.fixture
def server(market_server: MarketServer) -> MarketServer:
    return market_server


def chart_quote(symbol: str) -> dict[str, list[float | None]]:
    """The recorded chart's raw quote arrays (prices as Yahoo sent them)."""
    result = json.loads(fixture(CHARTS[symbol]))["chart"]["result"][0]
    return result["indicators"]["quote"][0]  # type: ignore[no-any-return]


async def test_london_pence_become_pounds(yahoo: YahooProvider) -> None:
    q = await yahoo.quote("BATS.L", 0)  # meta.currency "GBp", regularMarketPrice 4180.0
    assert q.currency == "GBP"
    assert (q.price, q.high, q.low) == (41.8, 42.37, 41.58)
    assert q.previous_close == pytest.approx(42.43) and q.open == pytest.approx(42.28)
    raw = [c for c in chart_quote("BATS.L")["close"] if c is not None]
    bars = await yahoo.history("BATS.L", 0, 253)
    assert len(bars) == len(raw) == 20
    assert [b.close for b in bars] == pytest.approx([c / 100 for c in raw])
    assert all(b.adj_close == pytest.approx(b.close) for b in bars)


@pytest.mark.parametrize(
    ("symbol", "currency", "price"),
    [
        ("GS2C.DE", "EUR", 19.948),
        ("TCS.NS", "INR", 2114.4),
        ("MSFT", "USD", 541.55),
        ("INR=X", "INR", 83.89),  # USD/INR: rupees per dollar
        ("EURUSD=X", "USD", 1.1131),  # dollars per euro
    ],
)
async def test_the_chart_states_the_currency(
    yahoo: YahooProvider, symbol: str, currency: str, price: float
) -> None:
    q = await yahoo.quote(symbol, 0)
    assert (q.currency, q.price) == (currency, price)


async def test_a_chart_without_a_currency_is_a_rejected_quote(
    yahoo: YahooProvider, server: MarketServer
) -> None:
    body = json.loads(fixture(CHARTS["MSFT"]))
    del body["chart"]["result"][0]["meta"]["currency"]
    server.faults.append(Fault(200, json.dumps(body)))
    # yfinance itself needs meta.currency (a KeyError, translated as permanent); our own check
    # (chart_currency) refuses a meta without one as well: never a silent USD
    with pytest.raises((PermanentSourceError, InvalidQuote), match="currency"):
        await yahoo.quote("MSFT", 0)
    with pytest.raises(InvalidQuote, match="states no currency"):
        chart_currency("MSFT", {"regularMarketPrice": 541.55})
    body["chart"]["result"][0]["meta"]["currency"] = "XYZ"
    server.faults.append(Fault(200, json.dumps(body)))
    with pytest.raises(InvalidQuote, match="unknown currency"):
        await yahoo.history("MSFT", 0, 5)


async def test_nse_quotes_are_in_rupees(server: MarketServer) -> None:
    nse = NseProvider(server.url, timeout_s=5.0)
    try:
        assert (await nse.quote("HDFCBANK.NS", 0)).currency == "INR"
        assert (await nse.quote("INFY", 0)).currency == "INR"
    finally:
        await nse.close()


class Down:
    """A live provider we own that has nothing for any symbol."""

    name = "down"
    live = True

    def __init__(self) -> None:
        self.calls = 0

    async def quote(self, symbol: str, tick: int) -> StockData:
        self.calls += 1
        raise PermanentSourceError(f"down: nothing for {symbol}")

    async def history(self, symbol: str, tick: int, n: int) -> list[Bar]:
        raise PermanentSourceError(f"down: no history for {symbol}")


class Rates:
    """A live provider we own that quotes USDINR=X at 84 (stamped 2026-12-01) until told not to."""

    name = "rates"
    live = True

    def __init__(self) -> None:
        self.up = True

    async def quote(self, symbol: str, tick: int) -> StockData:
        if not self.up:
            raise PermanentSourceError("rates: down")
        return StockData(
            symbol=symbol, price=84.0, volume=0, timestamp=datetime(2026, 12, 1, tzinfo=UTC),
            high=84.0, low=84.0, open=84.0, close=84.0, source=self.name, currency="INR",
        )  # fmt: skip

    async def history(self, symbol: str, tick: int, n: int) -> list[Bar]:
        raise PermanentSourceError("rates: no history")


async def test_a_rate_falls_back_to_the_reference_rates_stale_with_its_date() -> None:
    down = Down()
    f = DataFetcher([down, ReferenceRates()], clock=ManualClock())
    q = await f.fetch_stock_data("USDINR=X")
    assert (q.symbol, q.source, q.stale, q.currency) == ("USDINR=X", "ecb", True, "INR")
    assert q.timestamp.time() == datetime.min.time() and q.age_s > 0
    assert 50 < q.price < 150
    bars = await f.history("USDINR=X", 30)
    assert len(bars) == 30 and bars[-1].date == q.timestamp.date().isoformat()
    assert down.calls == 1
    await f.close()


async def test_a_stock_never_reaches_the_reference_rates() -> None:
    down = Down()
    f = DataFetcher([down, ReferenceRates()], clock=ManualClock())
    with pytest.raises(QuoteUnavailable) as caught:
        await f.fetch_stock_data("AAPL")
    assert "ecb" not in str(caught.value)
    with pytest.raises(QuoteUnavailable):
        await f.history("AAPL")
    assert await f.fetch_batch_data(["AAPL", "TCS.NS"]) == {}
    ecb = f.provider_status()[1]
    assert (ecb["name"], ecb["calls_ok"], ecb["calls_failed"]) == ("ecb", 0, 0)
    await f.close()


async def test_a_last_good_rate_newer_than_the_reference_rate_is_served_instead() -> None:
    rates = Rates()
    f = DataFetcher([rates, ReferenceRates()], clock=ManualClock())
    assert (await f.fetch_stock_data("USDINR=X")).source == "rates"
    rates.up = False
    q = await f.fetch_stock_data("USDINR=X")
    assert (q.source, q.stale, q.price, q.currency) == ("rates", True, 84.0, "INR")
    await f.close()


async def test_the_configured_chain_ends_with_the_reference_rates() -> None:
    f = DataFetcher(providers_for(Settings(data_source="replay")), clock=ManualClock(3))
    assert [g.name for g in f.guards] == ["replay", "ecb"]
    assert (await f.fetch_stock_data("IBM")).currency == "USD"
    q = await f.fetch_stock_data("EURUSD=X")  # replay has no rates: the ECB's, stale
    assert (q.source, q.stale, q.currency) == ("ecb", True, "USD")
    await f.close()
    sim = DataFetcher(providers_for(Settings(data_source="simulated")), clock=ManualClock(3))
    q = await sim.fetch_stock_data("USDINR=X")  # the simulated walk has it: current
    assert (q.source, q.stale, q.currency) == ("simulated", False, "INR")
    await sim.close()


async def test_the_route_and_the_dashboard_frame_show_the_currency() -> None:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    fetcher = DataFetcher([TickQuoteProvider(SimulatedSource(seed=1))], clock=ManualClock(2))
    transport = httpx.ASGITransport(with_state(app, {"fetcher": fetcher}))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for symbol, currency in [("TCS.NS", "INR"), ("AAPL", "USD"), ("USDJPY=X", "JPY")]:
            body = (await client.get(f"/api/quotes/{symbol}")).json()
            assert (body["symbol"], body["currency"]) == (symbol, currency)
        schema = (await client.get("/openapi.json")).json()["components"]["schemas"]
        assert "currency" in schema["StockData"]["properties"]
    q = await fetcher.fetch_stock_data("BATS.L")
    assert json.loads(quote_frame(q))["currency"] == "GBP"
