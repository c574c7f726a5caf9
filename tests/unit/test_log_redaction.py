"""No secret reaches the entry points' log: tokens and Redis passwords are redacted from the
finished line, whichever way they were passed (arguments, ``extra``, a traceback)."""

from __future__ import annotations

import io
import logging

import pytest

from marketpulse.alerts.channels import Channel
from marketpulse.observability.log_format import LogFormat
from marketpulse.observability.log_format import configure_logging as install
from marketpulse.observability.redaction import redact, register_secrets

SECRET = "Zq3_secret-TOKEN_value9"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            f'127.0.0.1:5 - "WebSocket /ws/sessions/s1?token={SECRET}" 403',
            '127.0.0.1:5 - "WebSocket /ws/sessions/s1?token=[redacted]" 403',
        ),
        (
            f'"GET /x?a=1&token={SECRET}&b=2 HTTP/1.1" 200',
            '"GET /x?a=1&token=[redacted]&b=2 HTTP/1.1" 200',
        ),
        (f"Authorization: Bearer {SECRET}", "Authorization: Bearer [redacted]"),
        (
            f"protocols marketpulse.v1, marketpulse.token.{SECRET}",
            "protocols marketpulse.v1, marketpulse.token.[redacted]",
        ),
        (f"redis://:{SECRET}@127.0.0.1:6379/0", "redis://:[redacted]@127.0.0.1:6379/0"),
        (f"rediss://mp:{SECRET}@db.internal:6380/2", "rediss://mp:[redacted]@db.internal:6380/2"),
        (f"/cb?access_token={SECRET}", "/cb?access_token=[redacted]"),
        (f"redis://h:1/0?password={SECRET}", "redis://h:1/0?password=[redacted]"),
        ("redis://127.0.0.1:6379/0 token bucket", "redis://127.0.0.1:6379/0 token bucket"),
    ],
)
def test_redact_rewrites_each_secret_and_keeps_the_rest(line: str, expected: str) -> None:
    assert redact(line) == expected


@pytest.mark.parametrize("style", ["text", "json"])
def test_no_way_of_logging_a_token_reaches_the_output(style: LogFormat) -> None:
    out = io.StringIO()
    handler = install("INFO", style, out)
    log = logging.getLogger("uvicorn.error")
    try:
        log.info('%s - "WebSocket %s" 403', "127.0.0.1:1", f"/ws/sessions/a?token={SECRET}")
        logging.getLogger("marketpulse.x").warning(
            "redis down", extra={"redis_url": f"redis://:{SECRET}@127.0.0.1:1/0"}
        )
        try:
            raise ValueError(f"bad header Bearer {SECRET}")
        except ValueError:
            logging.getLogger("marketpulse.x").exception("failed")
    finally:
        logging.getLogger().removeHandler(handler)
    text = out.getvalue()
    assert SECRET not in text
    assert text.count("[redacted]") >= 3  # the traceback also shows the raising line


def test_a_registered_channel_secret_is_redacted_wherever_it_appears() -> None:
    """Issue 20: the masked pieces of a channel's target (a bot token in an Apprise URL's host,
    a path token) are registered and leave every line, whoever logged them."""
    row = Channel(name="tg", kind="apprise", target="tgram://7654321:ZyXwVuTsRqPoN/99887766")
    register_secrets(row.secrets())
    line = "DEBUG apprise: Loaded Telegram URL: tgram://7654321:ZyXwVuTsRqPoN/99887766 ok"
    out = redact(line)
    assert "ZyXwVuTsRqPoN" not in out and "99887766" not in out
    assert out.startswith("DEBUG apprise: Loaded Telegram URL: tgram://")
