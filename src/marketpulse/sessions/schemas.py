"""Wire models of the HTTP API (pydantic at the edge)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class HoldingsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    holdings: dict[str, float] = Field(
        description="ticker -> number of shares", examples=[{"AAPL": 100, "MSFT": 75}]
    )


class CreateSessionBody(HoldingsBody):
    session_id: str | None = Field(default=None, examples=["user-123"])


class CreatedSession(BaseModel):
    session_id: str
    token: str
    state: dict[str, Any]


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail
