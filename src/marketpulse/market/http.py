"""``GET /api/quotes/{symbol}``: the latest quote with its age, source and staleness.

Answers the ``StockData`` JSON (``currency``, the ISO 4217 code the prices are in, and
``age_s``, ``source`` and ``stale`` included). A pair symbol (``USDINR=X``) is an exchange rate,
possibly the ECB reference rate served ``stale`` with its date as ``timestamp``. An invalid symbol
is 422 ``invalid_symbol``, no quote at all is 503 ``quote_unavailable``. The fetcher is
the lifespan state's ``fetcher``; all logic lives there.
"""

from __future__ import annotations

from typing import Annotated, TypedDict, cast

from fastapi import APIRouter, Path, Request

from marketpulse.infra.http_errors import error_responses
from marketpulse.market.fetcher import DataFetcher
from marketpulse.market.quotes import StockData
from marketpulse.market.symbols import INPUT_PATTERN, INPUT_RULE, check_symbol

router = APIRouter()


class MarketState(TypedDict):
    """What the market edge takes from the app's lifespan state."""

    fetcher: DataFetcher


@router.get(
    "/api/quotes/{symbol}",
    tags=["quotes"],
    responses=error_responses(
        422,
        503,
        described={
            422: "`invalid_symbol`: not a symbol",
            503: "`quote_unavailable`: no source has a quote, not even a stale one",
        },
    ),
    description=(
        "The latest quote of a symbol as `StockData` JSON: prices in `currency` (ISO 4217, "
        "upper case, as the source states it; minor units such as pence converted), with "
        "`source`, `stale` and `age_s`. A pair symbol such as `USDINR=X` is the price of one "
        "USD in INR; when no source has it, the ECB reference rate is served `stale` with its "
        "date as `timestamp`."
    ),
)
async def get_quote(
    symbol: Annotated[
        str,
        Path(
            description=INPUT_RULE,
            json_schema_extra={"pattern": INPUT_PATTERN},
            examples=["AAPL"],
        ),
    ],
    request: Request,
) -> StockData:
    fetcher = cast(MarketState, request.scope["state"])["fetcher"]
    return await fetcher.fetch_stock_data(check_symbol(symbol, exact=True))
