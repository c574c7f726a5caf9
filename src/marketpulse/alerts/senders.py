"""How each kind of named channel sends a message (``channels.Message``); each ``send`` returns
once the far end took it and raises ``NotificationFailed`` (or another error) otherwise.

- ``EmailSender``: SMTP with ``aiosmtplib`` (STARTTLS and AUTH from the settings). Why
  aiosmtplib and not ``smtplib`` in a thread: a send runs under a per-send timeout, and a
  coroutine is cancelled where it waits, while a thread blocked on a server that stopped
  answering cannot be: it would keep a worker thread of the shared executor, and enough of
  them would delay every other channel. The message's ``Message-ID`` is derived from its key,
  so a second delivery of one fire is the same message to a mail client.
- ``AppriseSender``: any Apprise URL, with ``Apprise.async_notify``; a refusal answers the
  plugins' own warnings (their text, secrets masked) as the error.
- ``WebhookSender``: a JSON POST (``{"kind", "title", "message", "key", "fires"}``) with
  ``Idempotency-Key: <key>``, retried like the built-in webhook (``notifiers.WebhookNotifier``).

Error texts pass through ``mask_text`` with the channel's secrets before anyone sees them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol

import aiosmtplib
import apprise

from marketpulse.alerts.channels import Channel, Message, mask_text
from marketpulse.alerts.notifiers import NotificationFailed, WebhookNotifier
from marketpulse.infra.retry import RetryPolicy


class Sender(Protocol):
    async def send(self, message: Message) -> None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """The SMTP server e-mail channels send through (``MARKETPULSE_SMTP_*``)."""

    host: str | None = None
    port: int = 587
    user: str | None = None
    password: str | None = None
    sender: str = "marketpulse@localhost"
    starttls: bool = True
    ca_file: str | None = None  # extra CA bundle that signs the server's certificate
    timeout_s: float = 10.0


class EmailSender:
    def __init__(self, addresses: list[str], smtp: SmtpConfig) -> None:
        self.addresses = addresses
        self.smtp = smtp

    async def send(self, message: Message) -> None:
        smtp = self.smtp
        if not smtp.host:
            raise NotificationFailed("no SMTP server is configured (MARKETPULSE_SMTP_HOST)")
        mail = EmailMessage()
        mail["From"] = smtp.sender
        mail["To"] = ", ".join(self.addresses)
        mail["Subject"] = message.title
        mail["Message-ID"] = f"<{message.key}@marketpulse>"
        mail["X-Marketpulse-Key"] = message.key
        mail.set_content(message.body)
        try:
            await aiosmtplib.send(
                mail,
                hostname=smtp.host,
                port=smtp.port,
                username=smtp.user or None,
                password=smtp.password or None,
                start_tls=smtp.starttls,
                cert_bundle=smtp.ca_file or None,
                timeout=smtp.timeout_s,
            )
        except aiosmtplib.SMTPException as exc:
            raise NotificationFailed(f"SMTP: {exc}") from exc

    async def close(self) -> None:
        return None


class AppriseSender:
    def __init__(self, url: str, secrets: list[str]) -> None:
        self.url = url
        self.secrets = secrets

    async def send(self, message: Message) -> None:
        app = apprise.Apprise()
        if not app.add(self.url):
            raise NotificationFailed("Apprise does not know this URL (no plugin for its scheme)")
        result = await app.async_notify(body=message.body, title=message.title)
        if result:
            return
        said = [e.message for e in result.logs() if e.level in ("WARNING", "ERROR", "CRITICAL")]
        text = "; ".join(said[-3:]) or f"Apprise answered {result.status.name}"
        raise NotificationFailed(mask_text(f"Apprise: {text}", self.secrets))

    async def close(self) -> None:
        return None


class WebhookSender:
    def __init__(self, url: str, retry: RetryPolicy | None, timeout_s: float) -> None:
        self._hook = WebhookNotifier(url, retry=retry, timeout_s=timeout_s)

    async def send(self, message: Message) -> None:
        body = json.dumps(
            {
                "kind": message.kind,
                "title": message.title,
                "message": message.body,
                "key": message.key,
                "fires": [f.model_dump(mode="json") for f in message.fires],
            }
        )
        await self._hook.post(body, message.key)

    async def close(self) -> None:
        await self._hook.close()


def sender_for(
    channel: Channel, smtp: SmtpConfig, *, retry: RetryPolicy | None = None, timeout_s: float
) -> Sender:
    if channel.kind == "email":
        assert isinstance(channel.target, list)
        return EmailSender(list(channel.target), smtp)
    assert isinstance(channel.target, str)
    if channel.kind == "apprise":
        return AppriseSender(channel.target, channel.secrets())
    return WebhookSender(channel.target, retry, timeout_s)


def apprise_knows(url: str) -> bool:
    """Whether Apprise has a plugin that takes ``url`` (a channel's validation)."""
    return apprise.Apprise.instantiate(url) is not None
