"""HTTP and WebSocket surface of alerts and monitored symbols; logic lives in the services.

- ``GET/POST /api/alerts``, ``DELETE /api/alerts/{id}``: alert conditions. A bad body (unknown
  type, comparison other than above/below, negative or NaN threshold, invalid symbol) is a 422
  ``invalid_input`` with the reason, and nothing is stored.
- ``GET /api/alerts/history?symbol=&limit=``: fired alerts, newest first.
- ``GET/POST /api/symbols``, ``DELETE /api/symbols/{symbol}``: the monitored set.
- ``/ws/alerts``: every fired alert as ``{"type": "alert", ...}``; ``{"action": "ping"}`` gets a
  ``pong``, anything else an ``error`` (the connection stays open).

Services come from the lifespan state (``AlertsState``): ``alerts`` (``AlertManager``) and
``monitor`` (``MonitorService``).
"""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any, TypedDict, cast

from fastapi import APIRouter, Query, Request, Response, WebSocket
from pydantic import BaseModel, ConfigDict, field_validator
from starlette.requests import HTTPConnection

from marketpulse.alerts.engine import AlertManager
from marketpulse.alerts.monitor import MonitorService
from marketpulse.alerts.rules import AlertCondition
from marketpulse.errors import AlertNotFound, SymbolNotMonitored
from marketpulse.infra.ws.connection import WsClose, receive_text, run_connection
from marketpulse.infra.ws.origins import origin_allowed
from marketpulse.market.symbols import check_symbol, parse_symbol
from marketpulse.observability.telemetry import Telemetry

log = logging.getLogger(__name__)
router = APIRouter()


class SymbolIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    symbol: str

    @field_validator("symbol", mode="before")
    @classmethod
    def _symbol(cls, v: object) -> str:
        return parse_symbol(v)


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


@router.get("/api/alerts", tags=["alerts"])
async def list_alerts(request: Request) -> dict[str, list[dict[str, Any]]]:
    alerts = await _alerts(request).list_alerts()
    return {"alerts": [a.model_dump(mode="json") for a in alerts]}


@router.post("/api/alerts", tags=["alerts"], status_code=201)
async def create_alert(request: Request, condition: AlertCondition) -> dict[str, Any]:
    created = await _alerts(request).add_alert(condition)
    return created.model_dump(mode="json")


@router.get("/api/alerts/history", tags=["alerts"])
async def alert_history(
    request: Request,
    symbol: Annotated[str | None, Query(max_length=20)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> dict[str, list[dict[str, Any]]]:
    sym = check_symbol(symbol) if symbol else None
    rows = await _alerts(request).history(sym, limit)
    return {"history": [r.model_dump(mode="json") for r in rows]}


@router.delete("/api/alerts/{alert_id}", tags=["alerts"], status_code=204)
async def delete_alert(request: Request, alert_id: str) -> Response:
    if not await _alerts(request).remove_alert(alert_id):
        raise AlertNotFound(f"no alert with id {alert_id!r}")
    return Response(status_code=204)


@router.get("/api/symbols", tags=["symbols"])
async def list_symbols(request: Request) -> dict[str, list[str]]:
    return {"symbols": await _monitor(request).symbols()}


@router.post("/api/symbols", tags=["symbols"], status_code=201)
async def add_symbol(request: Request, body: SymbolIn) -> dict[str, Any]:
    monitor = _monitor(request)
    added = await monitor.add_symbol(body.symbol)
    return {"symbol": body.symbol, "added": added, "symbols": await monitor.symbols()}


@router.delete("/api/symbols/{symbol}", tags=["symbols"], status_code=204)
async def remove_symbol(request: Request, symbol: str) -> Response:
    sym = check_symbol(symbol)
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
    async with alerts.subscribe() as events:
        await ws.accept()
        telemetry.client_connected("alerts")
        try:
            await run_connection(ws, _forward(ws, events), _receive(ws))
        finally:
            telemetry.client_disconnected("alerts")


async def _forward(ws: WebSocket, events: Any) -> None:
    async for raw in events:
        await ws.send_text(json.dumps({"type": "alert", **json.loads(raw)}))


async def _receive(ws: WebSocket) -> None:
    while True:
        text = await receive_text(ws)
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
