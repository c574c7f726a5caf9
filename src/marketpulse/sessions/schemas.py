"""Wire models of the HTTP API (pydantic at the edge).

The schemas state what the session service enforces (``portfolio.py``, ``market/symbols.py``):
ticker and session id patterns, 1-100 holdings, quantities in (0, 1e12]. The service checks
them itself, with its own messages and codes (``invalid_ticker``), so the patterns here are
description, not validation; quantities are strict JSON numbers (a string or a boolean is
refused, not coerced).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat
from pydantic.config import JsonDict, JsonValue

from marketpulse.market.fx import BASE_CURRENCIES
from marketpulse.market.symbols import INPUT_PATTERN, INPUT_RULE
from marketpulse.sessions.portfolio import MAX_HOLDINGS, MAX_QUANTITY, SESSION_ID_PATTERN

HOLDINGS_SCHEMA: JsonDict = {
    "propertyNames": {"pattern": INPUT_PATTERN},
    "additionalProperties": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_QUANTITY},
    "minProperties": 1,
    "maxProperties": MAX_HOLDINGS,
}


class HoldingsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    holdings: dict[str, StrictFloat] = Field(
        description=(
            f"ticker -> number of shares; a ticker is {INPUT_RULE}, one the market knows "
            "(the same ticker written twice holds the sum)"
        ),
        json_schema_extra=HOLDINGS_SCHEMA,
        examples=[{"AAPL": 100, "MSFT": 75}],
    )


_CODES: list[JsonValue] = [*sorted(BASE_CURRENCIES)]
CURRENCY_SCHEMA: JsonDict = {"enum": _CODES}  # exactly what the service accepts


class CreateSessionBody(HoldingsBody):
    session_id: str | None = Field(
        default=None,
        description="chosen by the server unless given",
        json_schema_extra={"pattern": SESSION_ID_PATTERN},
        examples=["user-123"],
    )
    base_currency: str | None = Field(
        default=None,
        description=(
            "ISO 4217 code the portfolio is valued in (total_value, weights, returns); "
            "default MARKETPULSE_BASE_CURRENCY (USD). An unknown code is 422 invalid_currency"
        ),
        json_schema_extra=CURRENCY_SCHEMA,
        examples=["INR"],
    )


class BaseCurrencyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_currency: str = Field(
        description="ISO 4217 code; the holdings are revalued in it (a basis change)",
        json_schema_extra=CURRENCY_SCHEMA,
        examples=["INR"],
    )


class CurrentAnalysis(BaseModel):
    ticker: str
    started_at: str
    run_id: str
    basis_version: int
    status: str = Field(description="running | complete | cancelled | failed")


class SessionState(BaseModel):
    """The session state object (docs/contracts.md): holdings, their valuation in the base
    currency and the analysis."""

    session_id: str
    holdings: dict[str, float] = Field(description="ticker -> shares")
    total_value: float = Field(
        description="Σ shares × price × fx[currency], in base_currency, rounded to the cent"
    )
    current_analysis: CurrentAnalysis | None
    analysis_results: list[dict[str, Any]] = Field(
        description="the analysis_result messages kept (newest MARKETPULSE_RESULTS_CAP)"
    )
    last_activity: str
    version: int = Field(description="increases on every committed change")
    basis_version: int = Field(
        description="increases when the holdings, the base currency, a price or a rate change"
    )
    prices: dict[str, float] = Field(description="ticker -> price, in the ticker's own currency")
    valued_at: str
    base_currency: str = Field(description="ISO 4217 code total_value and weights are in")
    currencies: dict[str, str] = Field(
        description="ticker -> ISO 4217 code of its price (its quote's)"
    )
    fx: dict[str, float] = Field(
        description="currency -> the price of one unit in base_currency (the base itself 1)"
    )
    flags: list[Literal["fx_stale", "fx_unavailable", "currency_mismatch"]] = Field(
        description=(
            "fx_stale: a rate is the offline reference rate; fx_unavailable / "
            "currency_mismatch: the last good valuation is kept (never converted at 1:1)"
        )
    )


class CreatedSession(BaseModel):
    session_id: str
    token: str
    state: SessionState
