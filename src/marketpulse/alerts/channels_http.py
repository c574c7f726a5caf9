"""HTTP surface of the named delivery channels (issue 20); the logic is ``channel_service.py``.

- ``GET /api/channels``: every row, targets masked; ``GET /api/channels/{name}``: one.
- ``POST /api/channels`` (201): a new row (409 ``channel_exists``, 409 ``too_many_channels``);
  ``PUT /api/channels/{name}``: change one (the body is the row without its name);
  ``DELETE`` (204).
- ``POST /api/channels/{name}/test``: sends a test message, answers ``{"ok", "answer"}``: the
  channel's own answer ("ok", or its error text, secrets masked); 200 either way (the request
  worked; the channel may not have).

Every answer shows a target masked (``Channel.masked``); a bad body is a 422 ``invalid_input``
naming the field. The service comes from the lifespan state (``ChannelsState``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypedDict, cast

from fastapi import APIRouter, Body, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from pydantic.config import JsonDict

from marketpulse.alerts.channel_service import ChannelService
from marketpulse.alerts.channels import (
    ADDRESS_PATTERN,
    HTTP_URL_PATTERN,
    MAX_ADDRESSES,
    MAX_URL,
    URL_PATTERN,
    Channel,
    QuietHours,
)
from marketpulse.alerts.rules import BUILTIN_CHANNELS, CHANNEL_NAME_PATTERN
from marketpulse.errors import ValidationFailed
from marketpulse.infra.http_errors import error_responses

router = APIRouter()


class ChannelsState(TypedDict):
    channels: ChannelService


_NAME_SCHEMA: JsonDict = {
    "pattern": CHANNEL_NAME_PATTERN,
    "not": {"enum": list(BUILTIN_CHANNELS)},
}


class _RowIn(BaseModel):
    """A channel row as written: types exact (no coercion), so the OpenAPI schema says exactly
    what is accepted; one model per kind, chosen by ``kind``. ``PUT`` takes the row without its
    name (the path's), ``POST`` with it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    quiet_hours: QuietHours | None = Field(
        default=None, description="fires are held meanwhile and sent when they end"
    )
    digest: bool = Field(
        default=False, description="held fires are sent as one digest, not one message each"
    )
    back_to_normal: bool = Field(
        default=False, description="a message when an alert's condition clears"
    )


class EmailRowIn(_RowIn):
    kind: Literal["email"]
    target: list[Annotated[str, StringConstraints(pattern=ADDRESS_PATTERN)]] = Field(
        description="the addresses the messages go to",
        min_length=1,
        max_length=MAX_ADDRESSES,
        examples=[["ops@example.com"]],
    )


class AppriseRowIn(_RowIn):
    kind: Literal["apprise"]
    target: str = Field(
        description="an Apprise URL (tgram://…, ntfy://…, discord://…); answers mask its secrets",
        max_length=MAX_URL,
        pattern=URL_PATTERN,
        examples=["json://127.0.0.1:9/marketpulse"],
    )


class WebhookRowIn(_RowIn):
    kind: Literal["webhook"]
    target: str = Field(
        description="an http(s) URL, POSTed JSON with Idempotency-Key; answers mask its secrets",
        max_length=MAX_URL,
        pattern=HTTP_URL_PATTERN,
        examples=["http://127.0.0.1:9/marketpulse"],
    )


_NAME_FIELD = Field(
    description="1-32 of a-z, 0-9, '_', '-' (not console, websocket or webhook)",
    json_schema_extra=_NAME_SCHEMA,
    examples=["ops-mail"],
)


class EmailChannelIn(EmailRowIn):
    name: str = _NAME_FIELD


class AppriseChannelIn(AppriseRowIn):
    name: str = _NAME_FIELD


class WebhookChannelIn(WebhookRowIn):
    name: str = _NAME_FIELD


ChannelIn = Annotated[
    EmailChannelIn | AppriseChannelIn | WebhookChannelIn, Body(discriminator="kind")
]
RowIn = Annotated[EmailRowIn | AppriseRowIn | WebhookRowIn, Body(discriminator="kind")]


def _row(body: _RowIn, name: str | None = None) -> Channel:
    data = body.model_dump()
    if name is not None:
        data["name"] = name
    try:
        return Channel.model_validate(data)
    except ValidationError as exc:  # what the schema cannot say (none known): still a 422
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ValidationFailed(f"{where}: {first['msg']}") from exc


class TestAnswer(BaseModel):
    ok: bool = Field(description="whether the channel took the test message")
    answer: str = Field(description='"ok", or the channel\'s error (secrets masked)')


def _service(request: Request) -> ChannelService:
    return cast(ChannelsState, request.scope["state"])["channels"]


_NAME = Path(pattern=CHANNEL_NAME_PATTERN, json_schema_extra=_NAME_SCHEMA, examples=["ops-mail"])
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
    row = await _service(request).create(_row(body))
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
    request: Request, name: Annotated[str, _NAME], body: RowIn
) -> dict[str, Any]:
    """Change the channel ``name``: the body is the row without its name."""
    row = await _service(request).replace(_row(body, name))
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
