"""Receivers for the named channels' tests, on loopback, both real servers.

- ``JsonReceiver``: an aiohttp server that Apprise's ``json://127.0.0.1:<port>/`` plugin POSTs
  to (``{"version", "title", "message", "type", …}``). It records each body; ``received`` gets
  each message as it arrives (before it is answered), ``answered`` each one answered 200. With
  ``hold`` set, a request is not answered until ``release()`` (a receiver that hangs); with
  ``status`` it answers that status.
- ``SmtpServer``: aiosmtpd on 127.0.0.1 with STARTTLS required (a certificate made here for
  127.0.0.1 by ``make_certificate``) and AUTH (one user), keeping every message it accepts and
  putting each on ``messages``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import re
import ssl
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from marketpulse.infra.redis.embedded import free_port

KEY_RE = re.compile(r"key: (\S+)")


def key_of(text: str) -> str | None:
    """The idempotency key a message body carries (``key: <fire id>``)."""
    m = KEY_RE.search(text)
    return m.group(1) if m else None


class JsonReceiver:
    def __init__(self, *, hold: bool = False, status: int = 200) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.answered: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.status = status
        self._open = asyncio.Event()
        if not hold:
            self._open.set()
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def keys(self) -> list[str | None]:
        return [key_of(str(b.get("message", ""))) for b in self.bodies]

    def release(self) -> None:
        self._open.set()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.append(body)
        self.received.put_nowait(body)
        await self._open.wait()
        if self.status == 200:
            self.answered.put_nowait(body)
        return web.json_response({}, status=self.status)

    async def start(self, port: int = 0) -> str:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"json://127.0.0.1:{self.port}/"

    async def aclose(self) -> None:
        self._open.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (it is its own CA): (cert file, key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        mail = message_from_bytes(content)
        self.server.mails.append((list(envelope.rcpt_tos), mail))
        self.server.loop.call_soon_threadsafe(self.server.messages.put_nowait, mail)
        return "250 OK"


class SmtpServer:
    """aiosmtpd in its own thread (its Controller), STARTTLS required, AUTH as ``user``."""

    def __init__(self, folder: Path, user: str, password: str) -> None:
        self.cert, self.key = make_certificate(folder)
        self.user, self.password = user, password
        self.mails: list[tuple[list[str], Message]] = []
        self.messages: asyncio.Queue[Message] = asyncio.Queue()
        self.loop = asyncio.get_running_loop()
        self.port = free_port()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        self.controller = Controller(
            _Handler(self),
            hostname="127.0.0.1",
            port=self.port,
            tls_context=context,
            require_starttls=True,
            auth_required=True,
            auth_require_tls=True,
            authenticator=self._authenticate,
        )

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == self.user
            and data.password.decode() == self.password
        )
        return AuthResult(success=ok, handled=False)

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()
