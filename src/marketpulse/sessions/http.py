"""HTTP routes of sessions: parse, authenticate, call the session service, serialise."""

from __future__ import annotations

from typing import Annotated, Any, TypedDict, cast

from fastapi import APIRouter, Header, Request, Response
from starlette.requests import HTTPConnection

from marketpulse.errors import SessionNotFound
from marketpulse.infra.redis.pubsub import EventHub
from marketpulse.observability.telemetry import Telemetry
from marketpulse.sessions.analysis import AnalysisEngine
from marketpulse.sessions.schemas import CreatedSession, CreateSessionBody, ErrorBody, HoldingsBody
from marketpulse.sessions.service import SessionService
from marketpulse.sessions.store import SessionStore

router = APIRouter(prefix="/api/sessions", tags=["sessions"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "missing, expired, or not yours"},
    422: {"model": ErrorBody, "description": "invalid input"},
}


class SessionsState(TypedDict):
    """What the session edge (HTTP and WebSocket) takes from the app's lifespan state."""

    sessions: SessionService
    store: SessionStore
    hub: EventHub
    engine: AnalysisEngine
    telemetry: Telemetry


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


@router.post(
    "",
    status_code=201,
    response_model=CreatedSession,
    responses={409: {"model": ErrorBody}, **_ERRORS},
)
async def create_session(body: CreateSessionBody, request: Request) -> CreatedSession:
    sid, token, state = await _service(request).create(body.session_id, body.holdings)
    return CreatedSession(session_id=sid, token=token, state=state)


@router.get("/{session_id}", responses=_ERRORS)
async def get_session(
    session_id: str, request: Request, authorization: Auth = None
) -> dict[str, Any]:
    return await _service(request).read(session_id, _token(authorization))


@router.put("/{session_id}/holdings", responses=_ERRORS)
async def put_holdings(
    session_id: str, body: HoldingsBody, request: Request, authorization: Auth = None
) -> dict[str, Any]:
    return await _service(request).set_holdings(session_id, _token(authorization), body.holdings)


@router.delete("/{session_id}", status_code=204, responses=_ERRORS)
async def delete_session(session_id: str, request: Request, authorization: Auth = None) -> Response:
    await _service(request).delete(session_id, _token(authorization))
    return Response(status_code=204)
