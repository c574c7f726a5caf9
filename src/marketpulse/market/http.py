"""``GET /api/quotes/{symbol}``: the latest quote with its age, source and staleness.

Answers the ``StockData`` JSON (``age_s``, ``source`` and ``stale`` included); an invalid symbol
is 422 ``invalid_symbol``, no quote at all is 503 ``quote_unavailable``. The fetcher is
the lifespan state's ``fetcher``; all logic lives there.
"""

from __future__ import annotations

from typing import Any, TypedDict, cast

from fastapi import APIRouter, Request

from marketpulse.market.fetcher import DataFetcher

router = APIRouter()


class MarketState(TypedDict):
    """What the market edge takes from the app's lifespan state."""

    fetcher: DataFetcher


@router.get("/api/quotes/{symbol}")
async def get_quote(symbol: str, request: Request) -> dict[str, Any]:
    fetcher = cast(MarketState, request.scope["state"])["fetcher"]
    quote = await fetcher.fetch_stock_data(symbol)
    return quote.model_dump(mode="json")
