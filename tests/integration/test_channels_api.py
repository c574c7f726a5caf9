"""/api/channels on a real Redis: create, read, change, delete, the cap, clear 422s, and the
test send answering the channel's own answer; targets masked in every answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from marketpulse.alerts.channel_service import ChannelService
from marketpulse.alerts.channel_store import RedisChannelStore
from marketpulse.alerts.channels_http import router
from marketpulse.alerts.senders import SmtpConfig, sender_for
from marketpulse.infra.http_errors import install_error_handlers
from marketpulse.infra.redis import keys
from marketpulse.infra.redis.client import RedisClient
from support.asgi import with_state
from support.channel_receivers import JsonReceiver, key_of

TOKEN = "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


@pytest.fixture
async def api(redis_boundary: RedisClient) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    service = ChannelService(
        RedisChannelStore(redis_boundary),
        lambda c: sender_for(c, SmtpConfig(), timeout_s=5),
        max_channels=3,
        timeout_s=5,
    )
    transport = httpx.ASGITransport(app=with_state(app, {"channels": service}))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


def tg(name: str = "tg", **kw: Any) -> dict[str, Any]:
    return {"name": name, "kind": "apprise", "target": f"tgram://123456789:{TOKEN}/42", **kw}


async def test_crud_answers_masked_targets(
    api: httpx.AsyncClient, redis_boundary: RedisClient
) -> None:
    r = await api.post("/api/channels", json=tg(quiet_hours={"start": "22:00", "end": "07:00",
                                                             "tz": "Asia/Kolkata"}))  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.json()["target"] == "tgram://***/***"
    assert r.json()["quiet_hours"]["tz"] == "Asia/Kolkata"
    listed = (await api.get("/api/channels")).json()["channels"]
    assert [c["name"] for c in listed] == ["tg"] and TOKEN not in str(listed)
    assert TOKEN not in (await api.get("/api/channels/tg")).text
    row = tg(digest=True)
    del row["name"]
    r = await api.put("/api/channels/tg", json=row)
    assert r.status_code == 200 and r.json()["digest"] is True and TOKEN not in r.text
    # the row was created with its consumer group on the outbox
    groups = await redis_boundary.call("XINFO", "GROUPS", keys.ALERT_OUTBOX)
    assert any(keys.alert_delivery_group("tg").encode() in g.values() for g in groups)
    assert (await api.delete("/api/channels/tg")).status_code == 204
    assert (await api.get("/api/channels/tg")).json()["error"]["code"] == "channel_not_found"
    groups = await redis_boundary.call("XINFO", "GROUPS", keys.ALERT_OUTBOX)
    assert not any(keys.alert_delivery_group("tg").encode() in g.values() for g in groups)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"name": "x", "kind": "sms", "target": "x"}, "kind"),
        ({"name": "websocket", "kind": "webhook", "target": "https://h.example.com/"},
         "built-in"),
        ({"name": "m", "kind": "email", "target": ["nope"]}, "pattern"),
        ({"name": "a", "kind": "apprise", "target": "no scheme"}, "pattern"),
        ({"name": "d", "kind": "webhook", "target": "https://h.example.com/", "digest": 1},
         "digest"),
        ({"name": "q", "kind": "webhook", "target": "https://h.example.com/",
          "quiet_hours": {"start": "22:00", "end": "07:00", "tz": "Mars/Olympus"}}, "tz"),
        ({"name": "w", "kind": "webhook", "target": "https://h.example.com/", "extra": 1},
         "extra"),
    ],
)  # fmt: skip
async def test_a_bad_channel_is_a_clear_422(
    api: httpx.AsyncClient, body: dict[str, Any], says: str
) -> None:
    r = await api.post("/api/channels", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_input"
    assert says in r.json()["error"]["message"]
    assert (await api.get("/api/channels")).json()["channels"] == []


async def test_names_taken_the_cap_and_missing_rows(api: httpx.AsyncClient) -> None:
    for name in ("a", "b", "c"):
        assert (await api.post("/api/channels", json=tg(name))).status_code == 201
    r = await api.post("/api/channels", json=tg("a"))
    assert (r.status_code, r.json()["error"]["code"]) == (409, "channel_exists")
    r = await api.post("/api/channels", json=tg("d"))
    assert (r.status_code, r.json()["error"]["code"]) == (409, "too_many_channels")
    row = tg()
    del row["name"]
    r = await api.put("/api/channels/zz", json=row)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "channel_not_found")
    r = await api.put("/api/channels/a", json=tg("b"))  # the name is the path's alone
    assert r.status_code == 422 and "name" in r.json()["error"]["message"]
    assert (await api.delete("/api/channels/zz")).status_code == 404
    assert (await api.get("/api/channels/Not%20A%20Name")).status_code == 422


async def test_the_test_send_answers_the_channels_own_answer(api: httpx.AsyncClient) -> None:
    ok, refusing = JsonReceiver(), JsonReceiver(status=500)
    try:
        for name, receiver in (("ok", ok), ("refusing", refusing)):
            url = await receiver.start()
            body = {"name": name, "kind": "apprise", "target": url}
            assert (await api.post("/api/channels", json=body)).status_code == 201
        r = await api.post("/api/channels/ok/test")
        assert r.json() == {"ok": True, "answer": "ok"}
        [got] = ok.bodies
        assert (key_of(got["message"]) or "").startswith("test-")
        r = await api.post("/api/channels/refusing/test")
        assert r.status_code == 200 and r.json()["ok"] is False
        assert "Apprise" in r.json()["answer"]
        assert (await api.post("/api/channels/none/test")).status_code == 404
    finally:
        await ok.aclose()
        await refusing.aclose()
