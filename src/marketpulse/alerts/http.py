"""HTTP and WebSocket surface of alerts and monitored symbols; logic lives in the services.

- ``GET/POST /api/alerts``, ``DELETE /api/alerts/{id}``: alert conditions. A bad body (unknown
  type, comparison other than above/below, negative or NaN threshold, invalid symbol) is a 422
  ``invalid_input`` with the reason, and nothing is stored. The body (``AlertIn``) is taken as
  written, never coerced, so the OpenAPI schema says exactly what is accepted.
- ``GET /api/alerts/history?symbol=&limit=``: fired alerts, newest first.
- ``POST /api/alerts/backtest``: a dry run of a rule (or a stored alert) on the symbols'
  daily history (``alerts/backtest.py``); stores nothing.
- ``GET/POST /api/symbols``, ``DELETE /api/symbols/{symbol}``: the monitored set.
- ``/ws/alerts``: every fired alert as ``{"type": "alert", ...}``; ``{"action": "ping"}`` gets a
  ``pong``, anything else an ``error`` (the connection stays open). It subscribes through the
  instance's pub/sub hub, as the session and dashboard sockets do: refused at the handshake
  while the hub is down, closed with 1012 when the hub loses Redis (alerts may have been
  missed).

Services come from the lifespan state (``AlertsState``): ``alerts`` (``AlertManager``) and
``monitor`` (``MonitorService``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from datetime import date, datetime
from typing import Annotated, Any, TypedDict, cast

from fastapi import APIRouter, Path, Query, Request, Response, WebSocket
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.config import JsonDict
from starlette.requests import HTTPConnection

from marketpulse.alerts.backtest import (
    MAX_RANGE_DAYS,
    MAX_SYMBOLS,
    Backtester,
    BacktestResult,
)
from marketpulse.alerts.engine import AlertManager
from marketpulse.alerts.monitor import MonitorService
from marketpulse.alerts.rules import (
    ALERT_ID_PATTERN,
    COMPARISONS,
    AlertCondition,
    AlertType,
    new_alert_id,
)
from marketpulse.errors import (
    AlertNotFound,
    NotReplayable,
    RedisUnavailable,
    SymbolNotMonitored,
)
from marketpulse.infra.http_errors import error_responses
from marketpulse.infra.ws.connection import (
    WsClose,
    admitted,
    message_rate,
    over_rate,
    receive_text,
    refuse_unavailable,
    run_connection,
)
from marketpulse.infra.ws.limits import MessageRate
from marketpulse.infra.ws.origins import origin_allowed
from marketpulse.market.ports import QuoteFeed
from marketpulse.market.symbols import INPUT_PATTERN, INPUT_RULE, check_symbol, parse_symbol
from marketpulse.observability.telemetry import Telemetry

log = logging.getLogger(__name__)
router = APIRouter()

# an RFC 3339 date-time with its offset (``Z`` or ``+hh:mm``): the one form ``expires_at`` takes
_DATE_TIME_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
_SYMBOL: JsonDict = {"pattern": INPUT_PATTERN}


class SymbolIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    symbol: str = Field(description=INPUT_RULE, json_schema_extra=_SYMBOL, examples=["AAPL"])

    @field_validator("symbol", mode="before")
    @classmethod
    def _symbol(cls, v: object) -> str:
        return parse_symbol(v, exact=True)


class AlertIn(AlertCondition):
    """``POST /api/alerts``: an ``AlertCondition`` as written (types and words exact)."""

    symbol: str = Field(description=INPUT_RULE, json_schema_extra=_SYMBOL, examples=["AAPL"])
    alert_type: AlertType = Field(examples=["price_threshold"])
    threshold: float = Field(
        description="a price, a % change magnitude or a volume multiple; finite, >= 0",
        json_schema_extra={"minimum": 0},
        examples=[150.0],
    )
    comparison: str = Field(json_schema_extra={"enum": list(COMPARISONS)}, examples=["above"])
    id: str = Field(
        default_factory=new_alert_id,
        description="chosen by the server unless given; an existing id is replaced",
        json_schema_extra={"pattern": ALERT_ID_PATTERN},
    )
    cooldown_s: float = Field(default=0.0, ge=0, strict=True, allow_inf_nan=False)
    expires_at: datetime | None = Field(
        default=None, description="RFC 3339 with an offset; the alert never fires from then on"
    )

    @field_validator("symbol", mode="before")
    @classmethod
    def _symbol(cls, v: object) -> str:
        return parse_symbol(v, exact=True)

    @field_validator("alert_type", mode="before")
    @classmethod
    def _alert_type(cls, v: object) -> object:
        known = [t.value for t in AlertType]
        if isinstance(v, str) and v in known:
            return AlertType(v)
        raise ValueError(f"unknown alert type {v!r}; choose one of {', '.join(known)}")

    @field_validator("comparison", mode="before")
    @classmethod
    def _comparison(cls, v: object) -> str:
        if isinstance(v, str) and v in COMPARISONS:
            return v
        raise ValueError(f"comparison must be 'above' or 'below', got {v!r}")

    @field_validator("threshold", mode="before")
    @classmethod
    def _threshold_is_a_number(cls, v: object) -> object:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError(f"threshold must be a finite number (not NaN or infinity), got {v!r}")
        return v

    @field_validator("expires_at", mode="before")
    @classmethod
    def _expires_at(cls, v: object) -> object:
        if v is None or (isinstance(v, str) and _DATE_TIME_RE.fullmatch(v)):
            return v
        raise ValueError(
            f"expires_at must be an RFC 3339 date-time with an offset "
            f"(e.g. 2026-01-02T15:04:05Z), got {v!r}"
        )


class AlertsState(TypedDict):
    """What the alert edge (HTTP and ``/ws/alerts``) takes from the app's lifespan state."""

    alerts: AlertManager
    monitor: MonitorService
    telemetry: Telemetry


def alerts_state(conn: HTTPConnection) -> AlertsState:
    return cast(AlertsState, conn.scope["state"])


def _alerts(request: Request) -> AlertManager:
    return alerts_state(request)["alerts"]


def _monitor(request: Request) -> MonitorService:
    return alerts_state(request)["monitor"]


_SYMBOL_PATH = Path(description=INPUT_RULE, json_schema_extra=_SYMBOL, examples=["AAPL"])
_SAID = {
    422: "invalid input (`invalid_input`, or `invalid_symbol` for a symbol that is not one)",
    503: "`redis_unavailable`: Redis did not answer (the outcome of a write is unknown)",
    409: "`too_many_alerts` / `too_many_symbols`: the configured cap is reached",
}


@router.get("/api/alerts", tags=["alerts"], responses=error_responses(503, described=_SAID))
async def list_alerts(request: Request) -> dict[str, list[dict[str, Any]]]:
    alerts = await _alerts(request).list_alerts()
    return {"alerts": [a.model_dump(mode="json") for a in alerts]}


@router.post(
    "/api/alerts",
    tags=["alerts"],
    status_code=201,
    responses=error_responses(400, 409, 422, 503, described=_SAID),
)
async def create_alert(request: Request, body: AlertIn) -> dict[str, Any]:
    condition = AlertCondition.model_validate(body.model_dump())
    created = await _alerts(request).add_alert(condition)
    return created.model_dump(mode="json")


@router.get(
    "/api/alerts/history",
    tags=["alerts"],
    responses=error_responses(422, 503, described=_SAID),
)
async def alert_history(
    request: Request,
    symbol: Annotated[
        str | None,
        Query(
            description=f"only this symbol's alerts ({INPUT_RULE}); empty means all",
            json_schema_extra={"pattern": f"^$|{INPUT_PATTERN}"},
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> dict[str, list[dict[str, Any]]]:
    sym = check_symbol(symbol, exact=True) if symbol else None
    rows = await _alerts(request).history(sym, limit)
    return {"history": [r.model_dump(mode="json") for r in rows]}


@router.delete(
    "/api/alerts/{alert_id}",
    tags=["alerts"],
    status_code=204,
    responses=error_responses(404, 422, 503, described=_SAID | {404: "`alert_not_found`"}),
)
async def delete_alert(
    request: Request,
    alert_id: Annotated[str, Path(json_schema_extra={"pattern": ALERT_ID_PATTERN})],
) -> Response:
    if not await _alerts(request).remove_alert(alert_id):
        raise AlertNotFound(f"no alert with id {alert_id!r}")
    return Response(status_code=204)


@router.get("/api/symbols", tags=["symbols"], responses=error_responses(503, described=_SAID))
async def list_symbols(request: Request) -> dict[str, list[str]]:
    return {"symbols": await _monitor(request).symbols()}


@router.post(
    "/api/symbols",
    tags=["symbols"],
    status_code=201,
    responses=error_responses(400, 409, 422, 503, described=_SAID),
)
async def add_symbol(request: Request, body: SymbolIn) -> dict[str, Any]:
    monitor = _monitor(request)
    added = await monitor.add_symbol(body.symbol)
    return {"symbol": body.symbol, "added": added, "symbols": await monitor.symbols()}


@router.delete(
    "/api/symbols/{symbol}",
    tags=["symbols"],
    status_code=204,
    responses=error_responses(404, 422, 503, described=_SAID | {404: "`symbol_not_monitored`"}),
)
async def remove_symbol(request: Request, symbol: Annotated[str, _SYMBOL_PATH]) -> Response:
    sym = check_symbol(symbol, exact=True)
    if not await _monitor(request).remove_symbol(sym):
        raise SymbolNotMonitored(f"{sym} is not monitored")
    return Response(status_code=204)


@router.websocket("/ws/alerts")
async def alerts_socket(ws: WebSocket) -> None:
    """Stream fired alerts; the subscription is live before the handshake is accepted."""
    if not origin_allowed(ws):
        await ws.close(code=1008)
        return
    state = alerts_state(ws)
    alerts, telemetry = state["alerts"], state["telemetry"]
    async with contextlib.AsyncExitStack() as stack:
        if not await stack.enter_async_context(admitted(ws, "alerts")):
            return
        try:
            events = await stack.enter_async_context(alerts.subscribe())
        except RedisUnavailable as exc:  # the hub is down: HTTP 503, as the session socket
            log.info("alerts socket refused: %s", exc.message)
            await refuse_unavailable(ws, exc)
            return
        await ws.accept()
        telemetry.client_connected("alerts")
        try:
            await run_connection(ws, _forward(ws, events), _receive(ws, message_rate(ws)))
        finally:
            telemetry.client_disconnected("alerts")


async def _forward(ws: WebSocket, events: Any) -> None:
    async for raw in events:
        await ws.send_text(json.dumps({"type": "alert", **json.loads(raw)}))
    raise WsClose(1012)  # the stream ended: the client reconnects


async def _receive(ws: WebSocket, rate: MessageRate) -> None:
    while True:
        text = await receive_text(ws)
        if limited := over_rate(rate, "alerts"):
            await ws.send_text(
                json.dumps({"type": "error", "code": "rate_limited", "message": limited})
            )
            continue
        if text is None:
            raise WsClose(1003, "binary frames are not supported")
        await ws.send_text(json.dumps(_answer(text)))


def _answer(text: str) -> dict[str, str]:
    try:
        data = json.loads(text)
    except ValueError:
        return {"type": "error", "code": "bad_json", "message": "messages must be JSON objects"}
    if isinstance(data, dict) and data.get("action") == "ping":
        return {"type": "pong"}
    return {"type": "error", "code": "unknown_action", "message": "the only action is 'ping'"}


# -- POST /api/alerts/backtest: a dry run of a rule on history (issue 19; alerts/backtest.py) --


def _day(v: object) -> object:
    """A date only as ``YYYY-MM-DD`` text (no number, no datetime): the schema's ``date``."""
    if isinstance(v, str) and _DAY_RE.fullmatch(v):
        return v
    raise ValueError(f"a date must be YYYY-MM-DD, got {v!r}")


_DAY_RE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


class _BacktestRange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    symbols: list[Annotated[str, Field(json_schema_extra=_SYMBOL)]] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SYMBOLS,
        description=f"1 to {MAX_SYMBOLS} symbols to replay the rule on ({INPUT_RULE}); "
        "default: the rule's own",
        examples=[["AAPL", "MSFT"]],
    )
    start: date = Field(description="first day of the range, YYYY-MM-DD", examples=["2012-03-01"])
    end: date = Field(
        description=f"last day of the range, YYYY-MM-DD; a range over {MAX_RANGE_DAYS} days "
        "is cut to its last ones (the answer says so)",
        examples=["2013-03-01"],
    )

    @field_validator("symbols", mode="before")
    @classmethod
    def _symbols(cls, v: object) -> object:
        if isinstance(v, list):
            return [parse_symbol(s, exact=True) for s in v]
        return v

    @field_validator("start", "end", mode="before")
    @classmethod
    def _days(cls, v: object) -> object:
        return _day(v)


class BacktestRuleIn(_BacktestRange):
    """A backtest of a rule given in full (not stored)."""

    rule: AlertIn = Field(description="the rule, as POST /api/alerts takes it")
    alert_id: None = Field(default=None, description="null: the rule is given")


class BacktestAlertIn(_BacktestRange):
    """A backtest of a stored alert."""

    alert_id: str = Field(
        description="the stored alert to replay", json_schema_extra={"pattern": ALERT_ID_PATTERN}
    )
    rule: None = Field(default=None, description="null: the alert is named")


def _backtester(request: Request) -> Backtester:
    """One per app, on the app's fetcher (its histories) with calendars of its own."""
    found = getattr(request.app.state, "backtester", None)
    if isinstance(found, Backtester):
        return found
    made = Backtester(cast(QuoteFeed, request.scope["state"]["fetcher"]))
    request.app.state.backtester = made
    return made


@router.post(
    "/api/alerts/backtest",
    tags=["alerts"],
    responses=error_responses(
        400,
        409,
        422,
        503,
        described=_SAID
        | {
            409: "`history_not_covered`: the range holds none of a symbol's daily history "
            "(the message names the dates it has), or no source has one; `alert_not_found`: "
            "no alert with that `alert_id`",
        },
    ),
)
async def backtest_alert(
    request: Request, body: BacktestRuleIn | BacktestAlertIn
) -> BacktestResult:
    """Replay a rule (or a stored alert) on the symbols' daily history through the live
    engine's evaluation and state machine: the fires it would have made, the time it held,
    what was suppressed. Touches no alert, state or outbox (docs/alerts.md, "Backtest")."""
    if isinstance(body, BacktestRuleIn):
        rule = AlertCondition.model_validate(body.rule.model_dump())
    else:
        stored = await _alerts(request).get_alert(body.alert_id)
        if stored is None:
            raise NotReplayable(f"no alert with id {body.alert_id!r}", "alert_not_found")
        rule = stored
    return await _backtester(request).run(rule, body.symbols, body.start, body.end)
