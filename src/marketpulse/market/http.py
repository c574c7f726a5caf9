"""``GET /api/quotes/{symbol}``: the latest quote with its age, source and staleness.

Answers the ``StockData`` JSON (``age_s``, ``source`` and ``stale`` included); an invalid symbol
is 422 ``invalid_symbol``, no quote at all is 503 ``quote_unavailable``. The fetcher is
``request.app.state.fetcher``; all logic lives there.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from marketpulse.market.fetcher import DataFetcher

router = APIRouter()


@router.get("/api/quotes/{symbol}")
async def get_quote(symbol: str, request: Request) -> dict[str, Any]:
    fetcher: DataFetcher = request.app.state.fetcher
    quote = await fetcher.fetch_stock_data(symbol)
    return quote.model_dump(mode="json")
