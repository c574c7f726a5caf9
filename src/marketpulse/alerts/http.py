"""HTTP and WebSocket surface of alerts and monitored symbols; logic lives in the services.

- ``GET/POST /api/alerts``, ``DELETE /api/alerts/{id}``: alert conditions. A bad body (unknown
  type, comparison other than above/below, negative or NaN threshold, invalid symbol) is a 422
  ``invalid_input`` with the reason, and nothing is stored. The body (``AlertIn``) is taken as
  written, never coerced, so the OpenAPI schema says exactly what is accepted.
- ``PUT /api/alerts/{id}``: edit (same body, the id from the path): the state is reset as a
  new alert's (a crossing starts disarmed) and the alert is evaluated at once; 404 if none.
- ``POST /api/alerts/{id}/snooze`` (``{"until": iso}`` or ``{"minutes": n}``) and
  ``DELETE /api/alerts/{id}/snooze``: fires while snoozed are recorded, not delivered.
- ``GET /api/alerts`` answers each alert with its ``state`` (armed, the text "armed, RSI(14)
  41.2", the values at the latest quote, snoozed_until, last_fired_at).
- The request body's JSON schema is written here (``ALERT_BODY_SCHEMA``, one variant per
  kind of alert) so that it says exactly what the model accepts: schemathesis checks both ways.
- ``GET /api/alerts/history?symbol=&limit=``: fired alerts and corporate actions (a split
  applied: ``"kind": "corporate_action"``, ``alerts/splits.py``), newest first (market time).
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
import math
import re
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, TypedDict, cast

from fastapi import APIRouter, Path, Query, Request, Response, WebSocket
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.config import JsonDict
from starlette.requests import HTTPConnection

from marketpulse.alerts.backtest import (
    MAX_RANGE_DAYS,
    MAX_SYMBOLS,
    Backtester,
    BacktestResult,
)
from marketpulse.alerts.engine import AlertManager, state_text
from marketpulse.alerts.monitor import MonitorService
from marketpulse.alerts.rules import (
    ALERT_ID_PATTERN,
    ALERT_ID_RE,
    CLAUSE_TYPES,
    COMPARISONS,
    INDICATOR_KINDS,
    MAX_CLAUSES,
    MAX_PERIOD,
    PERIOD_KINDS,
    PRICE_TYPES,
    SEED_TYPES,
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
from marketpulse.timefmt import utc_now

log = logging.getLogger(__name__)
router = APIRouter()

# an RFC 3339 date-time with its offset (``Z`` or ``+hh:mm``): the one form ``expires_at`` takes
_DATE_TIME_RE = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
_SYMBOL: JsonDict = {"pattern": INPUT_PATTERN}
_DATE_TIME: JsonDict = {
    "type": "string",
    "format": "date-time",
    "pattern": _DATE_TIME_RE.pattern.replace("\\d", "[0-9]"),
}
MAX_SNOOZE_MINUTES = 366 * 24 * 60


def _date_time(name: str, v: object) -> object:
    if v is None or (isinstance(v, str) and _DATE_TIME_RE.fullmatch(v)):
        return v
    raise ValueError(
        f"{name} must be an RFC 3339 date-time with an offset (e.g. 2026-01-02T15:04:05Z), "
        f"got {v!r}"
    )


def _strict_number(name: str, v: object) -> object:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number (not NaN or infinity), got {v!r}")
    return v


def _period_schema(description: str) -> dict[str, Any]:
    return {
        "type": "integer", "minimum": 1, "maximum": MAX_PERIOD, "description": description,
    }  # fmt: skip


_KIND = "the indicator (docs/alerts.md, Indicators)"
_INDICATOR_SCHEMA: dict[str, Any] = {
    "description": "what an indicator alert or clause observes",
    "oneOf": [
        {
            "type": "object", "additionalProperties": False, "required": ["kind"],
            "properties": {
                "kind": {"enum": ["rsi"], "description": "Wilder's RSI, 0..100"},
                "period": {"anyOf": [_period_schema("sessions (default 14)"), {"type": "null"}]},
            },
        },
        {
            "type": "object", "additionalProperties": False, "required": ["kind", "period"],
            "properties": {
                "kind": {"enum": sorted(PERIOD_KINDS - {"rsi"}), "description": _KIND},
                "period": _period_schema("sessions"),
            },
        },
        {
            "type": "object", "additionalProperties": False,
            "required": ["kind", "fast", "slow"],
            "properties": {
                "kind": {"enum": ["ma_cross"], "description": "100 * (fast / slow - 1)"},
                "fast": _period_schema("sessions of the fast average (normally < slow)"),
                "slow": _period_schema("sessions of the slow average"),
                "average": {"anyOf": [{"enum": ["sma", "ema"]}, {"type": "null"}],
                            "description": "sma (default) or ema"},
            },
        },
        {
            "type": "object", "additionalProperties": False, "required": ["kind"],
            "properties": {
                "kind": {
                    "enum": [k for k in INDICATOR_KINDS if k.startswith("from_52w")],
                    "description": "distance from the 52-week high / low, in %",
                },
            },
        },
    ],
}  # fmt: skip
_MARGIN: dict[str, Any] = {
    "type": "number", "minimum": 0, "default": 0,
    "description": "hysteresis: a fired alert re-arms only beyond the threshold by this much "
    "on the false side, in the observed value's units",
}  # fmt: skip
_SEED_TYPES = sorted(t.value for t in SEED_TYPES)
_CLAUSE_SCHEMA: dict[str, Any] = {
    "description": "one condition of an all_of alert, on the alert's symbol",
    "oneOf": [
        {
            "type": "object", "additionalProperties": False,
            "required": ["alert_type", "comparison", "threshold"],
            "properties": {
                "alert_type": {"enum": _SEED_TYPES},
                "comparison": {"enum": ["above", "below"]},
                "threshold": {"type": "number", "minimum": 0,
                              "description": "a price, a % change magnitude or a volume multiple"},
                "rearm_margin": _MARGIN,
            },
        },
        {
            "type": "object", "additionalProperties": False,
            "required": ["alert_type", "comparison", "threshold", "indicator"],
            "properties": {
                "alert_type": {"enum": ["indicator"]},
                "comparison": {"enum": ["above", "below"]},
                "threshold": {"type": "number", "description": "in the indicator's units"},
                "indicator": _INDICATOR_SCHEMA,
                "rearm_margin": _MARGIN,
            },
        },
    ],
}  # fmt: skip


def _alert_variant(kind: str) -> dict[str, Any]:
    common: dict[str, Any] = {
        "symbol": {"type": "string", "description": INPUT_RULE, **_SYMBOL},
        "id": {"type": "string", "pattern": ALERT_ID_PATTERN,
               "description": "chosen by the server unless given; an existing id is replaced"},
        "cooldown_s": {"type": "number", "minimum": 0, "default": 0,
                       "description": "seconds after a fire in which a new crossing is suppressed"},
        "expires_at": {"anyOf": [_DATE_TIME, {"type": "null"}],
                       "description": "RFC 3339 with an offset; never fires from then on"},
        "snoozed_until": {"anyOf": [_DATE_TIME, {"type": "null"}],
                          "description": "RFC 3339 with an offset; until then a fire is recorded "
                          "in history (muted) but not delivered"},
    }  # fmt: skip
    cmp_all: dict[str, Any] = {
        "enum": list(COMPARISONS),
        "description": "above / below fire when the condition becomes true (a new alert "
        "already true at once); crosses_* need a false observation first",
    }
    if kind == "seed":
        props: dict[str, Any] = {
            "alert_type": {"enum": _SEED_TYPES}, "comparison": cmp_all,
            "threshold": {"type": "number", "minimum": 0,
                          "description": "a price, a % change magnitude or a volume multiple"},
            "rearm_margin": _MARGIN,
        }  # fmt: skip
        required = ["symbol", "alert_type", "comparison", "threshold"]
    elif kind == "indicator":
        props = {
            "alert_type": {"enum": ["indicator"]}, "comparison": cmp_all,
            "threshold": {"type": "number", "description": "in the indicator's units"},
            "indicator": _INDICATOR_SCHEMA, "rearm_margin": _MARGIN,
        }  # fmt: skip
        required = ["symbol", "alert_type", "comparison", "threshold", "indicator"]
    else:
        props = {
            "alert_type": {"enum": ["all_of"]},
            "comparison": {"enum": ["above", "crosses_above"],
                           "description": "above: fires when every clause becomes true "
                           "together; crosses_above: after an observation where they were not"},
            "all_of": {"type": "array", "minItems": 2, "maxItems": MAX_CLAUSES,
                       "items": _CLAUSE_SCHEMA},
            "threshold": {"enum": [0], "description": "none (each clause has its own)"},
            "rearm_margin": {"enum": [0], "description": "none (each clause has its own)"},
        }  # fmt: skip
        required = ["symbol", "alert_type", "comparison", "all_of"]
    # what GET answers can be sent back: the other kinds' fields as null
    for other in ("indicator", "all_of"):
        props.setdefault(other, {"type": "null", "description": "not for this kind of alert"})
    return {
        "type": "object", "additionalProperties": False, "required": required,
        "properties": {**common, **props},
    }  # fmt: skip


ALERT_BODY_SCHEMA: dict[str, Any] = {
    "title": "AlertIn",
    "description": "an alert: a seed type, an indicator, or all_of (docs/alerts.md)",
    "oneOf": [_alert_variant("seed"), _alert_variant("indicator"), _alert_variant("all_of")],
}


def _replace_schema(schema: dict[str, Any]) -> None:
    schema.clear()
    schema.update(ALERT_BODY_SCHEMA)


class SymbolIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    symbol: str = Field(description=INPUT_RULE, json_schema_extra=_SYMBOL, examples=["AAPL"])

    @field_validator("symbol", mode="before")
    @classmethod
    def _symbol(cls, v: object) -> str:
        return parse_symbol(v, exact=True)


class AlertIn(AlertCondition):
    """``POST /api/alerts``, ``PUT /api/alerts/{id}``: an ``AlertCondition`` as written (types
    and words exact; a nested indicator's parameter it does not take is refused even as null).
    Its OpenAPI schema is ``ALERT_BODY_SCHEMA``."""

    model_config = ConfigDict(json_schema_extra=_replace_schema)

    symbol: str = Field(description=INPUT_RULE, json_schema_extra=_SYMBOL, examples=["AAPL"])
    alert_type: AlertType = Field(examples=["price_threshold"])
    threshold: float = Field(
        default=0.0,
        description="a price, a % change magnitude or a volume multiple (finite, >= 0), or an "
        "indicator's level (may be negative)",
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
        known = [t.value for t in PRICE_TYPES]
        if isinstance(v, str) and v in known:
            return AlertType(v)
        raise ValueError(f"unknown alert type {v!r}; choose one of {', '.join(known)}")

    @field_validator("comparison", mode="before")
    @classmethod
    def _comparison(cls, v: object) -> str:
        if isinstance(v, str) and v in COMPARISONS:
            return v
        raise ValueError(
            f"comparison must be 'above' or 'below' (or 'crosses_above' / 'crosses_below'), "
            f"got {v!r}"
        )

    @field_validator("threshold", "rearm_margin", mode="before")
    @classmethod
    def _numbers_as_written(cls, v: object, info: Any) -> object:
        return _strict_number(str(info.field_name), v)

    @field_validator("expires_at", "snoozed_until", mode="before")
    @classmethod
    def _expires_at(cls, v: object, info: Any) -> object:
        return _date_time(str(info.field_name), v)

    @model_validator(mode="before")
    @classmethod
    def _exact_nested(cls, data: object) -> object:
        """The nested parts as written: words exact, numbers numbers, no parameter an
        indicator does not take (not even null)."""
        if not isinstance(data, dict):
            return data
        if data.get("alert_type") != AlertType.ALL_OF.value and "threshold" not in data:
            raise ValueError("threshold is required (only an all_of alert has none)")
        specs = [data.get("indicator")]
        clauses = data.get("all_of")
        if isinstance(clauses, list):
            for c in clauses:
                if isinstance(c, dict):
                    _check_clause(c)
                    specs.append(c.get("indicator"))
        for spec in specs:
            if isinstance(spec, dict):
                _check_spec(spec)
        return data


def _check_clause(c: dict[str, Any]) -> None:
    if c.get("alert_type") not in [t.value for t in CLAUSE_TYPES]:
        raise ValueError(f"unknown clause alert type {c.get('alert_type')!r}")
    if c.get("comparison") not in ("above", "below"):
        raise ValueError(
            f"a clause's comparison must be 'above' or 'below', got {c.get('comparison')!r}"
        )
    for f in ("threshold", "rearm_margin"):
        if f in c:
            _strict_number(f"clause {f}", c[f])


def _check_spec(spec: dict[str, Any]) -> None:
    kind = spec.get("kind")
    if not isinstance(kind, str):
        return  # the model says what is wrong with it
    taken = {"rsi": {"period"}, "ma_cross": {"fast", "slow", "average"}}.get(
        str(kind), {"period"} if kind in PERIOD_KINDS else set()
    )
    for f in ("period", "fast", "slow", "average"):
        if f in spec and f not in taken:
            raise ValueError(f"indicator {kind} takes no {f}")


class SnoozeIn(BaseModel):
    """``POST /api/alerts/{id}/snooze``: ``until`` a time, or for ``minutes`` from now."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra=lambda s: s.update(
            {"oneOf": [{"required": ["until"]}, {"required": ["minutes"]}]}
        ),
    )

    until: datetime | None = Field(
        default=None, description="RFC 3339 with an offset: fires before it are muted",
        json_schema_extra=_DATE_TIME,
    )  # fmt: skip
    minutes: float | None = Field(
        default=None, description="snooze for this many minutes from now",
        json_schema_extra={"type": "number", "exclusiveMinimum": 0,
                           "maximum": MAX_SNOOZE_MINUTES},
    )  # fmt: skip

    @field_validator("until", mode="before")
    @classmethod
    def _until(cls, v: object) -> object:
        if v is None:
            raise ValueError("until must be an RFC 3339 date-time with an offset, not null")
        return _date_time("until", v)

    @field_validator("minutes", mode="before")
    @classmethod
    def _minutes(cls, v: object) -> object:
        _strict_number("minutes", v)
        assert isinstance(v, int | float)
        if not 0 < v <= MAX_SNOOZE_MINUTES:
            raise ValueError(f"minutes must be > 0 and at most {MAX_SNOOZE_MINUTES}, got {v!r}")
        return v

    @model_validator(mode="after")
    def _one(self) -> SnoozeIn:
        if (self.until is None) == (self.minutes is None):
            raise ValueError("give exactly one of 'until' and 'minutes'")
        return self

    def end(self) -> datetime:
        if self.until is not None:
            return self.until
        assert self.minutes is not None
        return utc_now() + timedelta(minutes=self.minutes)


class AlertStateOut(BaseModel):
    """An alert's current state."""

    armed: bool = Field(description="true: the next true observation fires")
    text: str = Field(description='the state in words: "armed, RSI(14) 41.2"')
    values: dict[str, float | None] = Field(
        description="each observed value by label at the latest known quote (none: no value)"
    )
    snoozed_until: datetime | None = Field(description="fires before it are muted")
    last_fired_at: datetime | None = Field(description="market time of the last fire")
    muted: bool = Field(description="the last fire was muted (snoozed)")


class AlertOut(AlertCondition):
    """An alert as stored, with its current state."""

    state: AlertStateOut = Field(description="the alert's current state")


class AlertsOut(BaseModel):
    alerts: list[AlertOut] = Field(description="every alert, by symbol then id")


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
async def list_alerts(request: Request) -> AlertsOut:
    manager = _alerts(request)
    alerts = await manager.list_alerts()
    states = await manager.alert_states(alerts)
    out = []
    for a in alerts:
        state, ev = states[a.id]
        fired = None if state is None else state.last_fired_at
        st = AlertStateOut(
            armed=state is None or state.armed,
            text=state_text(a, state, ev),
            values={} if ev is None else dict(ev.values),
            snoozed_until=a.snoozed_until,
            last_fired_at=None if fired is None else datetime.fromtimestamp(fired, UTC),
            muted=state is not None and state.muted,
        )
        out.append(AlertOut.model_validate({**a.model_dump(), "state": st}))
    return AlertsOut(alerts=out)


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


_ID_PATH = Path(json_schema_extra={"pattern": ALERT_ID_PATTERN})
_404 = _SAID | {404: "`alert_not_found`"}


@router.put(
    "/api/alerts/{alert_id}",
    tags=["alerts"],
    responses=error_responses(400, 404, 422, 503, described=_404),
)
async def edit_alert(
    request: Request, alert_id: Annotated[str, _ID_PATH], body: AlertIn
) -> dict[str, Any]:
    """Replace the alert (the id is the path's); its state is reset as a new alert's and it
    is evaluated at once."""
    if not ALERT_ID_RE.fullmatch(alert_id):  # never stored, as DELETE answers
        raise AlertNotFound(f"no alert with id {alert_id!r}")
    condition = AlertCondition.model_validate({**body.model_dump(), "id": alert_id})
    if not await _alerts(request).edit_alert(condition):
        raise AlertNotFound(f"no alert with id {alert_id!r}")
    return condition.model_dump(mode="json")


@router.post(
    "/api/alerts/{alert_id}/snooze",
    tags=["alerts"],
    responses=error_responses(400, 404, 422, 503, described=_404),
)
async def snooze_alert(
    request: Request, alert_id: Annotated[str, _ID_PATH], body: SnoozeIn
) -> dict[str, Any]:
    """Until ``until`` (or ``minutes`` from now) a fire is recorded, muted, not delivered."""
    changed = await _alerts(request).snooze(alert_id, body.end())
    if changed is None:
        raise AlertNotFound(f"no alert with id {alert_id!r}")
    return changed.model_dump(mode="json")


@router.delete(
    "/api/alerts/{alert_id}/snooze",
    tags=["alerts"],
    responses=error_responses(404, 422, 503, described=_404),
)
async def unsnooze_alert(request: Request, alert_id: Annotated[str, _ID_PATH]) -> dict[str, Any]:
    """End the snooze (the alert's armed/fired state is kept)."""
    changed = await _alerts(request).snooze(alert_id, None)
    if changed is None:
        raise AlertNotFound(f"no alert with id {alert_id!r}")
    return changed.model_dump(mode="json")


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
    alerts = _alerts(request)
    rows = [(r.fired_at, r.model_dump(mode="json")) for r in await alerts.history(sym, limit)]
    rows += [(a.at, a.model_dump(mode="json")) for a in await alerts.splits.actions(sym, limit)]
    rows.sort(key=lambda r: r[0], reverse=True)  # stable: a fire keeps its place among fires
    return {"history": [r for _, r in rows[:limit]]}


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
        fire = json.loads(raw)
        if fire.get("session_id") is not None:
            continue  # a session's portfolio alert: its own sockets get it (sessions/ws.py)
        await ws.send_text(json.dumps({"type": "alert", **fire}))
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
