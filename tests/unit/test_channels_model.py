"""The named channels' model (alerts/channels.py): validation, masking, quiet hours, routes and
the messages, each with its idempotency key in the body."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from marketpulse.alerts.channels import (
    Channel,
    QuietHours,
    digest_message,
    fire_message,
    mask_text,
    mask_url,
    routed,
    secrets_of,
)
from marketpulse.alerts.event import FiredAlert
from marketpulse.alerts.rules import AlertCondition, AlertType
from marketpulse.market.quotes import StockData

T0 = datetime(2026, 1, 5, 4, 0, tzinfo=UTC)  # 09:30 in Asia/Kolkata


def fire(channels: tuple[str, ...] | None = None, **update: object) -> FiredAlert:
    alert = AlertCondition(
        symbol="AAPL", alert_type=AlertType.PRICE_THRESHOLD, threshold=150, comparison="above",
        channels=channels,
    )  # fmt: skip
    q = StockData(
        symbol="AAPL", price=151.0, volume=10, timestamp=T0, high=151.0, low=151.0,
        open=151.0, close=151.0, previous_close=150.0, source="test",
    )  # fmt: skip
    return FiredAlert.of(alert, 151.0, q, 1).model_copy(update=update)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/987654321",
         "tgram://***/***"),
        ("discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js", "discord://***/***"),
        ("ntfy://alice:s3cretpass@ntfy.example.com/alerts", "ntfy://alice:***@ntfy.example.com/***"),
        ("https://hooks.example.com/services/T000/B000/XXXX?token=abcdef123&x",
         "https://hooks.example.com/***/***/***/***?token=***&***"),
        ("json://127.0.0.1:8080/", "json://127.0.0.1:8080/"),
        ("pover://userkey123456@apptoken987654", "pover://***@***"),
    ],
)  # fmt: skip
def test_a_url_is_masked_but_keeps_its_scheme_and_a_real_host(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_a_url_urlsplit_refuses_is_masked_whole() -> None:
    assert mask_url("json://[broken/x") == "json://***"
    assert "[broken/x" in secrets_of("json://[broken/x")


def test_the_secrets_of_a_url_are_what_its_mask_hides() -> None:
    url = "tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/987654321"
    secrets = secrets_of(url)
    assert "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw" in secrets and "987654321" in secrets
    text = f"error posting to {url}: refused"
    assert "AAHdq" not in mask_text(text, secrets) and "987654321" not in mask_text(text, secrets)
    assert secrets_of("ntfy://u:pw1@ntfy.example.com/") == ["pw1"]  # a password of any length


def test_a_row_answers_masked() -> None:
    row = Channel(name="tg", kind="apprise", target="tgram://1234567:ABCDEFGHIJ/42424242")
    assert row.masked()["target"] == "tgram://***/***"
    mail = Channel(name="ops-mail", kind="email", target=["ops@example.com"])
    assert mail.masked()["target"] == ["ops@example.com"]


@pytest.mark.parametrize(
    ("row", "says"),
    [
        ({"name": "console", "kind": "webhook", "target": "https://x.example.com/"},
         "built-in"),
        ({"name": "Bad Name", "kind": "webhook", "target": "https://x.example.com/"},
         "channel name"),
        ({"name": "m", "kind": "email", "target": "ops@example.com"}, "list"),
        ({"name": "m", "kind": "email", "target": ["not-an-address"]}, "not an e-mail"),
        ({"name": "w", "kind": "webhook", "target": "ftp://x.example.com/"}, "http"),
        ({"name": "a", "kind": "apprise", "target": "no scheme"}, "URL"),
        ({"name": "w", "kind": "webhook", "target": "https://x.example.com/a b"}, "spaces"),
        ({"name": "q", "kind": "webhook", "target": "https://x.example.com/",
          "quiet_hours": {"start": "25:00", "end": "07:00", "tz": "UTC"}}, "HH:MM"),
        ({"name": "q", "kind": "webhook", "target": "https://x.example.com/",
          "quiet_hours": {"start": "22:00", "end": "07:00", "tz": "Mars/Olympus"}},
         "time zone"),
    ],
)  # fmt: skip
def test_a_bad_row_is_refused_with_the_reason(row: dict[str, object], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        Channel.model_validate(row)


def test_quiet_hours_across_midnight_in_their_zone() -> None:
    quiet = QuietHours(start="22:00", end="07:00", tz="Asia/Kolkata")  # UTC+05:30
    at = datetime(2026, 1, 5, 16, 30, tzinfo=UTC)  # 22:00 local: quiet starts
    assert quiet.quiet_at(at)
    assert not quiet.quiet_at(at - timedelta(minutes=1))
    assert quiet.quiet_at(datetime(2026, 1, 6, 1, 29, tzinfo=UTC))  # 06:59 local
    assert not quiet.quiet_at(datetime(2026, 1, 6, 1, 30, tzinfo=UTC))  # 07:00 local: over
    assert quiet.ends_after(at) == datetime(2026, 1, 6, 1, 30, tzinfo=UTC)
    muted = QuietHours(start="09:00", end="09:00", tz="UTC")  # equal ends: always quiet
    assert muted.quiet_at(at) and muted.quiet_at(at + timedelta(hours=12))
    day = QuietHours(start="12:00", end="13:00", tz="UTC")
    assert day.quiet_at(datetime(2026, 1, 5, 12, 30, tzinfo=UTC))
    assert not day.quiet_at(datetime(2026, 1, 5, 13, 0, tzinfo=UTC))


def test_routes_an_alert_to_the_channels_it_names() -> None:
    named = fire(("tg", "console"))
    assert routed(named, "tg", named=True) and routed(named, "console", named=False)
    assert not routed(named, "ops-mail", named=True) and not routed(named, "websocket", named=False)
    plain = fire(None)  # names none: the manager's own channels, as before
    assert routed(plain, "websocket", named=False) and routed(plain, "a-notifier", named=False)
    assert not routed(plain, "tg", named=True)
    cleared = fire(("tg", "console"), kind="cleared")
    assert routed(cleared, "tg", named=True, back_to_normal=True)
    assert not routed(cleared, "tg", named=True, back_to_normal=False)
    assert not routed(cleared, "console", named=False)


def test_alert_channels_are_validated() -> None:
    with pytest.raises(ValidationError, match="named twice"):
        fire(("tg", "tg"))
    with pytest.raises(ValidationError, match="not a channel name"):
        fire(("Bad Name",))


def test_every_message_carries_its_key_in_its_body() -> None:
    f = fire(("tg",))
    message = fire_message(f)
    assert message.key == f.id and message.body.endswith(f"key: {f.id}")
    back = fire_message(fire(("tg",), kind="cleared"))
    assert back.kind == "cleared" and "no longer true" in back.body and back.key in back.body


def test_a_digest_says_how_many_since_when_in_the_channels_zone() -> None:
    fires = [fire(("tg",)) for _ in range(3)]
    since = datetime(2026, 1, 5, 3, 45, tzinfo=UTC)  # 09:15 in Kolkata
    d = digest_message(fires, 5, since, "Asia/Kolkata")
    assert d.title == "marketpulse: fired 5 times since 09:15 (Asia/Kolkata)"
    assert all(f.id in d.body for f in fires) and "and 2 more" in d.body
    assert d.body.endswith(f"key: {d.key}")
    assert digest_message(fires, 5, since, "Asia/Kolkata").key == d.key  # resent: same key
