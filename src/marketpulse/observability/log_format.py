"""Log output of the entry points: every record's structured ``extra`` fields made visible.

Code logs a short message and puts the facts in ``extra`` (``log.info("provider call",
extra={"provider": "yahoo", "outcome": "ok", "latency_ms": 41.2})``). The formatters here print
those fields instead of dropping them:

- ``text`` (a laptop): ``2026-01-02 10:00:00,123 INFO marketpulse.x: provider call
  provider=yahoo outcome=ok latency_ms=41.2``; a value with spaces, quotes or ``=`` is quoted,
  lists and dicts are JSON, ``None`` fields are left out.
- ``json`` (production): one JSON object per line with ``ts`` (UTC, ISO-8601, ``Z``),
  ``level``, ``logger``, ``message``, every extra field, and ``exc`` / ``stack`` when the record
  has a traceback / stack. A field that would shadow one of those keys is prefixed ``extra_``.

Every line is redacted before it is written (``redaction.py``): tokens and Redis passwords never
reach the log, from our code, uvicorn's access and error logs or a library.

Only entry points call ``configure_logging``; library code never configures logging.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal, TextIO

from marketpulse.observability.redaction import RedactingFormatter

LogFormat = Literal["text", "json"]

# attributes every LogRecord has: anything else on a record came from ``extra`` (except
# uvicorn's ``color_message``, an ANSI-coloured copy of the message)
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}
_CORE = ("ts", "level", "logger", "message", "exc", "stack")


def extra_fields(record: logging.LogRecord) -> dict[str, object]:
    """The record's structured fields (what the call passed as ``extra``), in insertion order."""
    return {
        k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")
    }


def _text_value(value: object) -> str:
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str, separators=(",", ":"))
    text = str(value)
    if not text or any(c.isspace() or c in '="' for c in text):
        return json.dumps(text)
    return text


class KeyValueFormatter(logging.Formatter):
    """The classic one-line text format followed by `` key=value`` per structured field."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        pairs = [f"{k}={_text_value(v)}" for k, v in extra_fields(record).items() if v is not None]
        return " ".join([line, *pairs]) if pairs else line


class JsonLineFormatter(logging.Formatter):
    """One JSON object per record, one line each (a traceback goes in ``exc``)."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in extra_fields(record).items():
            body[f"extra_{key}" if key in _CORE else key] = value
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            body["exc"] = record.exc_text
        if record.stack_info:
            body["stack"] = self.formatStack(record.stack_info)
        return json.dumps(body, default=str, separators=(",", ":"))


def make_formatter(style: LogFormat) -> logging.Formatter:
    """The formatter for ``MARKETPULSE_LOG_FORMAT``; every line it writes is redacted
    (``redaction.py``: no session token, no Redis password)."""
    if style == "json":
        return RedactingFormatter(JsonLineFormatter())
    if style == "text":
        return RedactingFormatter(KeyValueFormatter())
    raise ValueError(f"log format must be 'text' or 'json', got {style!r}")


def configure_logging(
    level: str, style: LogFormat = "text", stream: TextIO | None = None
) -> logging.Handler:
    """Send the root logger's records to ``stream`` (stderr) in ``style``; returns the handler
    so a caller (a test) can remove it again. For entry points only."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(make_formatter(style))
    root = logging.getLogger()
    root.setLevel(level.upper())
    root.addHandler(handler)
    return handler
