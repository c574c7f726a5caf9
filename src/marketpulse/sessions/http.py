"""HTTP routes of sessions: parse, authenticate, call the session service, serialise."""

from __future__ import annotations

from typing import Annotated, Any, TypedDict, cast

from fastapi import APIRouter, Header, Path, Request, Response
from starlette.requests import HTTPConnection

from marketpulse.errors import SessionNotFound
from marketpulse.infra.http_errors import error_responses
from marketpulse.infra.redis.pubsub import EventHub
from marketpulse.infra.ws.limits import ConnectionCounts
from marketpulse.observability.telemetry import Telemetry
from marketpulse.sessions.analysis import AnalysisEngine
from marketpulse.sessions.portfolio import SESSION_ID_PATTERN
from marketpulse.sessions.schemas import (
    BaseCurrencyBody,
    CreatedSession,
    CreateSessionBody,
    HoldingsBody,
    SessionState,
)
from marketpulse.sessions.service import SessionService
from marketpulse.sessions.store import SessionStore

router = APIRouter(prefix="/api/sessions", tags=["sessions"])

_SAID = {
    404: "`session_not_found`: missing, expired, or the token is missing, wrong or foreign",
    409: "`session_exists`: a session with this id exists; `session_busy`: it kept changing",
    422: (
        "invalid input (`invalid_input`, `invalid_ticker` for a ticker the market lacks, "
        "`invalid_currency` for a code that is not ISO 4217)"
    ),
    503: (
        "`redis_unavailable`: Redis did not answer (the outcome of a write is unknown); "
        "`fx_unavailable`: no source has an exchange rate the valuation needs"
    ),
}


class SessionsState(TypedDict):
    """What the session edge (HTTP and WebSocket) takes from the app's lifespan state."""

    sessions: SessionService
    store: SessionStore
    hub: EventHub
    engine: AnalysisEngine
    telemetry: Telemetry
    ws_counts: ConnectionCounts  # open sockets per session and client, and the limits


def sessions_state(conn: HTTPConnection) -> SessionsState:
    return cast(SessionsState, conn.scope["state"])


def _service(request: Request) -> SessionService:
    return sessions_state(request)["sessions"]


def _token(authorization: str | None) -> str:
    """The bearer token; a missing one looks like a missing session (no existence oracle)."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise SessionNotFound()
    return authorization[7:].strip()


Auth = Annotated[str | None, Header(description="Bearer <token>")]
SessionId = Annotated[str, Path(json_schema_extra={"pattern": SESSION_ID_PATTERN})]


@router.post(
    "",
    status_code=201,
    response_model=CreatedSession,
    responses=error_responses(400, 409, 422, 503, described=_SAID),
)
async def create_session(body: CreateSessionBody, request: Request) -> CreatedSession:
    sid, token, state = await _service(request).create(
        body.session_id, body.holdings, body.base_currency
    )
    return CreatedSession(session_id=sid, token=token, state=SessionState.model_validate(state))


@router.get(
    "/{session_id}",
    response_model=SessionState,
    responses=error_responses(404, 422, 503, described=_SAID),
)
async def get_session(
    session_id: SessionId, request: Request, authorization: Auth = None
) -> dict[str, Any]:
    return await _service(request).read(session_id, _token(authorization))


@router.put(
    "/{session_id}/holdings",
    response_model=SessionState,
    responses=error_responses(400, 404, 409, 422, 503, described=_SAID),
)
async def put_holdings(
    session_id: SessionId, body: HoldingsBody, request: Request, authorization: Auth = None
) -> dict[str, Any]:
    return await _service(request).set_holdings(session_id, _token(authorization), body.holdings)


@router.put(
    "/{session_id}/base_currency",
    response_model=SessionState,
    responses=error_responses(400, 404, 409, 422, 503, described=_SAID),
)
async def put_base_currency(
    session_id: SessionId, body: BaseCurrencyBody, request: Request, authorization: Auth = None
) -> dict[str, Any]:
    """Value the portfolio in another currency from now on: a basis change (a running
    analysis restarts on the new basis)."""
    service = _service(request)
    return await service.set_base_currency(session_id, _token(authorization), body.base_currency)


@router.delete(
    "/{session_id}", status_code=204, responses=error_responses(404, 422, 503, described=_SAID)
)
async def delete_session(
    session_id: SessionId, request: Request, authorization: Auth = None
) -> Response:
    await _service(request).delete(session_id, _token(authorization))
    return Response(status_code=204)
