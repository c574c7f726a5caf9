"""HTTP routes of a session's portfolio alerts, ``/api/sessions/{id}/alerts`` (docs/alerts.md,
"Portfolio alerts"; docs/contracts.md). The session's bearer token authorises, as on every
session route, and the request is a client action (the session's TTL moves); the alerts
themselves are the alerts feature's, reached through ``PortfolioAlertsPort`` (wired by the app
to ``alerts/portfolio.py``'s ``PortfolioAlerts``): this edge imports no alert store.

The body is authorised before it is validated: a request without the session's token is a 404
whatever it carries (no oracle, and the OpenAPI contract's schema-valid bodies meet the same
answer); a body its schema accepts but the rules refuse (a drift alert without ``targets``, a
ticker not held) is a 422 ``invalid_input`` / ``not_in_portfolio`` with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Protocol, cast

from fastapi import APIRouter, Header, Path, Query, Request, Response
from pydantic import BaseModel, Field, ValidationError

from marketpulse.alerts.event import FiredAlert
from marketpulse.alerts.portfolio_rules import PortfolioAlert
from marketpulse.alerts.rules import ALERT_ID_PATTERN
from marketpulse.errors import SessionNotFound, ValidationFailed
from marketpulse.infra.http_errors import error_responses
from marketpulse.sessions.portfolio import SESSION_ID_PATTERN
from marketpulse.sessions.service import SessionService

router = APIRouter(prefix="/api/sessions", tags=["portfolio alerts"])


class PortfolioAlertsPort(Protocol):
    async def put(
        self, session_id: str, alert: PortfolioAlert, holdings: Mapping[str, float], *, reset: bool
    ) -> PortfolioAlert: ...

    async def remove(self, session_id: str, alert_id: str) -> None: ...

    async def listing(self, session_id: str) -> dict[str, Any]: ...

    async def history(self, session_id: str, limit: int) -> list[FiredAlert]: ...


_SAID = {
    404: "`session_not_found`: missing, expired, or the token is wrong; `alert_not_found`",
    409: "`limit_reached`: the session has its most portfolio alerts",
    422: "`invalid_input` (the reason says which rule), `not_in_portfolio` (a ticker not held)",
    503: "`redis_unavailable`: Redis did not answer (the outcome of a write is unknown)",
}

_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": PortfolioAlert.model_json_schema()}},
    }
}

Auth = Annotated[str | None, Header(description="Bearer <token>")]
SessionId = Annotated[str, Path(json_schema_extra={"pattern": SESSION_ID_PATTERN})]
AlertId = Annotated[str, Path(json_schema_extra={"pattern": ALERT_ID_PATTERN})]


class AlertStateOut(BaseModel):
    armed: bool = Field(description="false after a fire until the condition clears (re-arm)")
    last_fired_at: float | None = Field(description="epoch seconds of the last fire, or null")
    value: float | None = Field(description="the observed value at the last valuation")
    true: bool | None = Field(description="whether the condition held at the last valuation")


class PortfolioAlertOut(PortfolioAlert):
    state: AlertStateOut = Field(description="the stored armed/fired state and latest value")


class TrackOut(BaseModel):
    tick: int = Field(description="the market tick of the last valuation watched")
    index: float = Field(description="the time-weighted return index (1 when first watched)")
    peak: float = Field(description="the index's highest value")
    drawdown_pct: float = Field(description="100 × (1 − index / peak)")
    day_change_pct: float = Field(description="100 × (index / the day's reference − 1)")
    total_value: float = Field(description="the total value in the base currency")
    weights: dict[str, float] = Field(description="each holding's weight in %")


class PortfolioAlertsOut(BaseModel):
    alerts: list[PortfolioAlertOut] = Field(description="the session's portfolio alerts")
    track: TrackOut | None = Field(description="the return index, once a valuation was watched")


class PortfolioHistoryOut(BaseModel):
    history: list[dict[str, Any]] = Field(
        description="the session's fires, newest first (the fired-alert shape of "
        "/api/alerts/history, with session_id and portfolio.contributors)"
    )


def _token(authorization: str | None) -> str:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise SessionNotFound()
    return authorization[7:].strip()


def _parts(request: Request) -> tuple[SessionService, PortfolioAlertsPort]:
    state = request.scope["state"]
    return state["sessions"], cast(PortfolioAlertsPort, state["portfolio_alerts"])


async def _authorised(request: Request, session_id: str, authorization: str | None) -> Any:
    """The session's state (a client action: its TTL moves); SessionNotFound otherwise."""
    sessions, _ = _parts(request)
    return await sessions.read(session_id, _token(authorization))


async def _body(request: Request, alert_id: str | None) -> PortfolioAlert:
    try:
        raw = await request.json()
    except ValueError as exc:
        raise ValidationFailed("the body must be a JSON object") from exc
    if not isinstance(raw, dict):
        raise ValidationFailed("the body must be a JSON object")
    if alert_id is not None:
        raw = {**raw, "id": alert_id}
    try:
        return PortfolioAlert.model_validate(raw)
    except ValidationError as exc:
        said = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" if e["loc"] else e["msg"]
            for e in exc.errors()
        )
        raise ValidationFailed(said or "invalid portfolio alert") from exc


@router.get(
    "/{session_id}/alerts",
    response_model=PortfolioAlertsOut,
    responses=error_responses(404, 422, 503, described=_SAID),
)
async def list_portfolio_alerts(
    session_id: SessionId, request: Request, authorization: Auth = None
) -> dict[str, Any]:
    """The session's portfolio alerts, each with its state, and the return index."""
    await _authorised(request, session_id, authorization)
    return await _parts(request)[1].listing(session_id)


@router.post(
    "/{session_id}/alerts",
    status_code=201,
    response_model=PortfolioAlert,
    responses=error_responses(400, 404, 409, 422, 503, described=_SAID),
    openapi_extra=_BODY,
)
async def create_portfolio_alert(
    session_id: SessionId, request: Request, authorization: Auth = None
) -> PortfolioAlert:
    """Create a portfolio alert (an existing id is replaced and keeps its state)."""
    state = await _authorised(request, session_id, authorization)
    alert = await _body(request, None)
    return await _parts(request)[1].put(session_id, alert, state["holdings"], reset=False)


@router.put(
    "/{session_id}/alerts/{alert_id}",
    response_model=PortfolioAlert,
    responses=error_responses(400, 404, 409, 422, 503, described=_SAID),
    openapi_extra=_BODY,
)
async def edit_portfolio_alert(
    session_id: SessionId, alert_id: AlertId, request: Request, authorization: Auth = None
) -> PortfolioAlert:
    """Replace a portfolio alert (the id from the path); its state is reset as a new one's."""
    state = await _authorised(request, session_id, authorization)
    alert = await _body(request, alert_id)
    return await _parts(request)[1].put(session_id, alert, state["holdings"], reset=True)


@router.delete(
    "/{session_id}/alerts/{alert_id}",
    status_code=204,
    responses=error_responses(404, 422, 503, described=_SAID),
)
async def delete_portfolio_alert(
    session_id: SessionId, alert_id: AlertId, request: Request, authorization: Auth = None
) -> Response:
    await _authorised(request, session_id, authorization)
    await _parts(request)[1].remove(session_id, alert_id)
    return Response(status_code=204)


@router.get(
    "/{session_id}/alerts/history",
    response_model=PortfolioHistoryOut,
    responses=error_responses(404, 422, 503, described=_SAID),
)
async def portfolio_alert_history(
    session_id: SessionId,
    request: Request,
    authorization: Auth = None,
    limit: Annotated[int, Query(ge=1, le=500, description="at most this many fires")] = 50,
) -> dict[str, Any]:
    """The session's fires, newest first: only the session's token reads them (the shared
    ``/api/alerts/history`` and ``/ws/alerts`` leave portfolio fires out)."""
    await _authorised(request, session_id, authorization)
    fires = await _parts(request)[1].history(session_id, limit)
    return {"history": [f.model_dump(mode="json") for f in fires]}
