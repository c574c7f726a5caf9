"""The named channels' senders against real servers on loopback: e-mail through aiosmtpd
(STARTTLS required, with a certificate made in the test, and AUTH), Apprise's ``json://``
plugin to an aiohttp receiver of ours. Each message carries its key in its body."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from marketpulse.alerts.channels import Channel, fire_message
from marketpulse.alerts.event import FiredAlert
from marketpulse.alerts.notifiers import NotificationFailed
from marketpulse.alerts.rules import AlertCondition, AlertType
from marketpulse.alerts.senders import (
    AppriseSender,
    EmailSender,
    SmtpConfig,
    apprise_knows,
    sender_for,
)
from marketpulse.market.quotes import StockData
from support.channel_receivers import JsonReceiver, SmtpServer, key_of

DEADLINE = 15.0
T0 = datetime(2026, 1, 5, tzinfo=UTC)


def a_fire() -> FiredAlert:
    alert = AlertCondition(
        symbol="AAPL", alert_type=AlertType.PRICE_THRESHOLD, threshold=150, comparison="above",
        channels=("ops-mail",),
    )  # fmt: skip
    q = StockData(
        symbol="AAPL", price=151.0, volume=10, timestamp=T0, high=151.0, low=151.0,
        open=151.0, close=151.0, previous_close=150.0, source="test",
    )  # fmt: skip
    return FiredAlert.of(alert, 151.0, q, 1)


@pytest.fixture
async def smtp(tmp_path: Path) -> AsyncIterator[SmtpServer]:
    server = SmtpServer(tmp_path, "mp-user", "mp-Pass-123")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def config(server: SmtpServer, password: str) -> SmtpConfig:
    return SmtpConfig(
        host="127.0.0.1", port=server.port, user=server.user, password=password,
        sender="alerts@example.com", starttls=True, ca_file=str(server.cert), timeout_s=10,
    )  # fmt: skip


async def test_email_arrives_over_starttls_with_auth(smtp: SmtpServer) -> None:
    f = a_fire()
    sender = EmailSender(["ops@example.com", "cto@example.com"], config(smtp, smtp.password))
    await sender.send(fire_message(f))
    [(rcpt, mail)] = smtp.mails
    assert rcpt == ["ops@example.com", "cto@example.com"]
    assert mail["Subject"] == "marketpulse: AAPL price_threshold above 150"
    assert mail["Message-ID"] == f"<{f.id}@marketpulse>"
    assert mail["From"] == "alerts@example.com"
    body = mail.get_payload(decode=True)
    assert isinstance(body, bytes) and key_of(body.decode()) == f.id


async def test_email_with_a_wrong_password_fails_without_saying_it(smtp: SmtpServer) -> None:
    sender = EmailSender(["ops@example.com"], config(smtp, "wrong-Secret-999"))
    with pytest.raises(NotificationFailed, match="SMTP") as info:
        await sender.send(fire_message(a_fire()))
    assert "wrong-Secret-999" not in str(info.value)
    assert smtp.mails == []


async def test_email_without_a_server_configured_says_so() -> None:
    with pytest.raises(NotificationFailed, match="MARKETPULSE_SMTP_HOST"):
        await EmailSender(["ops@example.com"], SmtpConfig()).send(fire_message(a_fire()))


async def test_apprise_json_reaches_our_receiver_with_the_key() -> None:
    receiver = JsonReceiver()
    url = await receiver.start()
    try:
        f = a_fire()
        assert apprise_knows(url)
        await AppriseSender(url, []).send(fire_message(f))
        [body] = receiver.bodies
    finally:
        await receiver.aclose()
    assert body["title"] == "marketpulse: AAPL price_threshold above 150"
    assert key_of(body["message"]) == f.id


async def test_apprise_refused_answers_the_plugins_error() -> None:
    receiver = JsonReceiver(status=500)
    url = await receiver.start()
    try:
        with pytest.raises(NotificationFailed, match="Apprise"):
            await AppriseSender(url, []).send(fire_message(a_fire()))
    finally:
        await receiver.aclose()


async def test_a_row_gets_the_sender_of_its_kind(smtp: SmtpServer) -> None:
    row = Channel(name="ops-mail", kind="email", target=["ops@example.com"])
    sender = sender_for(row, config(smtp, smtp.password), timeout_s=5)
    await sender.send(fire_message(a_fire()))
    assert len(smtp.mails) == 1
    assert not apprise_knows("nosuchscheme://x")
