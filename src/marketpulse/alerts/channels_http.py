"""HTTP surface of the named delivery channels (issue 20); the logic is ``channel_service.py``.

- ``GET /api/channels``: every row, targets masked; ``GET /api/channels/{name}``: one.
- ``POST /api/channels`` (201): a new row (409 ``channel_exists``, 409 ``too_many_channels``);
  ``PUT /api/channels/{name}``: change one (its name is the path's); ``DELETE`` (204).
- ``POST /api/channels/{name}/test``: sends a test message, answers ``{"ok", "answer"}``: the
  channel's own answer ("ok", or its error text, secrets masked); 200 either way (the request
  worked; the channel may not have).

Every answer shows a target masked (``Channel.masked``); a bad body is a 422 ``invalid_input``
naming the field. The service comes from the lifespan state (``ChannelsState``).
"""

from __future__ import annotations

from typing import Annotated, Any, TypedDict, cast

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, Field

from marketpulse.alerts.channel_service import ChannelService
from marketpulse.alerts.channels import Channel
from marketpulse.alerts.rules import CHANNEL_NAME_PATTERN
from marketpulse.errors import ValidationFailed
from marketpulse.infra.http_errors import error_responses

router = APIRouter()


class ChannelsState(TypedDict):
    channels: ChannelService


class ChannelIn(Channel):
    """A channel row as written (see ``Channel``)."""


class TestAnswer(BaseModel):
    ok: bool = Field(description="whether the channel took the test message")
    answer: str = Field(description='"ok", or the channel\'s error (secrets masked)')


def _service(request: Request) -> ChannelService:
    return cast(ChannelsState, request.scope["state"])["channels"]


_NAME = Path(pattern=CHANNEL_NAME_PATTERN, examples=["ops-mail"])
_SAID = {
    404: "`channel_not_found`",
    409: "`channel_exists` (POST of a name taken) or `too_many_channels`",
    422: "invalid input: the message names the field and why",
    503: "`redis_unavailable`: Redis did not answer",
}


@router.get("/api/channels", tags=["channels"], responses=error_responses(503, described=_SAID))
async def list_channels(request: Request) -> dict[str, list[dict[str, Any]]]:
    return {"channels": [c.masked() for c in await _service(request).list()]}


@router.post(
    "/api/channels",
    tags=["channels"],
    status_code=201,
    responses=error_responses(400, 409, 422, 503, described=_SAID),
)
async def create_channel(request: Request, body: ChannelIn) -> dict[str, Any]:
    row = await _service(request).create(Channel.model_validate(body.model_dump()))
    return row.masked()


@router.get(
    "/api/channels/{name}",
    tags=["channels"],
    responses=error_responses(404, 422, 503, described=_SAID),
)
async def get_channel(request: Request, name: Annotated[str, _NAME]) -> dict[str, Any]:
    return (await _service(request).get(name)).masked()


@router.put(
    "/api/channels/{name}",
    tags=["channels"],
    responses=error_responses(400, 404, 422, 503, described=_SAID),
)
async def replace_channel(
    request: Request, name: Annotated[str, _NAME], body: ChannelIn
) -> dict[str, Any]:
    if body.name != name:
        raise ValidationFailed(f"name: the body names {body.name!r}, the path {name!r}")
    row = await _service(request).replace(Channel.model_validate(body.model_dump()))
    return row.masked()


@router.delete(
    "/api/channels/{name}",
    tags=["channels"],
    status_code=204,
    responses=error_responses(404, 422, 503, described=_SAID),
)
async def delete_channel(request: Request, name: Annotated[str, _NAME]) -> Response:
    await _service(request).delete(name)
    return Response(status_code=204)


@router.post(
    "/api/channels/{name}/test",
    tags=["channels"],
    responses=error_responses(404, 422, 503, described=_SAID),
)
async def test_channel(request: Request, name: Annotated[str, _NAME]) -> TestAnswer:
    ok, answer = await _service(request).test(name)
    return TestAnswer(ok=ok, answer=answer)
