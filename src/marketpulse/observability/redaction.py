"""Secrets kept out of the log: every line the entry points write is redacted as a whole.

Guarantee: a formatted log line (message, arguments, structured fields, traceback) never holds
a session token or a Redis password, whoever logged it (our code, uvicorn's access and error
logs, a library). What is rewritten, wherever it appears in the line:

- ``token=<value>`` (a session socket's ``?token=`` in a request line; also ``access_token=``
  and the like) and ``password=<value>`` (a query parameter of a Redis URL) -> ``[redacted]``
- ``Bearer <value>`` (an ``Authorization`` header) -> ``Bearer [redacted]``
- ``marketpulse.token.<value>`` (the socket subprotocol that carries a token)
  -> ``marketpulse.token.[redacted]``
- ``scheme://user:<password>@`` (a Redis URL with credentials) -> ``scheme://user:[redacted]@``

- every secret registered with ``register_secrets`` (the masked pieces of the delivery
  channels' targets: an Apprise URL's tokens, a webhook URL's path and query, passwords; see
  ``alerts/channels.py``) -> ``***``, wherever it appears (a library's error text included). At
  most ``MAX_SECRETS`` are kept, the latest registered; a deleted channel's stay (harmless).

The redaction works on the finished line, not on the record, so no way of passing a value
(``%s`` arguments, ``extra``, an exception's text) goes around it.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"
SECRET_MASK = "***"
MAX_SECRETS = 4096

_secrets: dict[str, None] = {}  # insertion-ordered: the oldest is dropped past MAX_SECRETS
_ordered: list[str] = []  # the same, longest first (what ``redact`` replaces)

_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # a value ends where a query parameter, a quoted field or a JSON string ends
    (re.compile(r"(?i)(token=|password=)[^\s&\"\\]+"), rf"\g<1>{REDACTED}"),
    (re.compile(r"(?i)(\bbearer\s+)[^\s\"\\]+"), rf"\g<1>{REDACTED}"),
    (re.compile(r"(\bmarketpulse\.token\.)[^\s,\"\\]+"), rf"\g<1>{REDACTED}"),
    (re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/@:\"']*:)[^\s/@\"']+@"), rf"\g<1>{REDACTED}@"),
)


def redact(text: str) -> str:
    """``text`` with every token and URL password replaced by ``[redacted]``."""
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    for secret in _ordered:
        if secret in text:
            text = text.replace(secret, SECRET_MASK)
    return text


def register_secrets(secrets: list[str]) -> None:
    """Redact each of ``secrets`` from every log line from now on (empty strings ignored)."""
    global _ordered
    new = [s for s in secrets if s and s not in _secrets]
    if not new:
        return
    for s in new:
        _secrets[s] = None
    while len(_secrets) > MAX_SECRETS:
        del _secrets[next(iter(_secrets))]
    _ordered = sorted(_secrets, key=len, reverse=True)


def forget_secrets() -> None:
    """Forget every registered secret (a process that builds one app after another: tests)."""
    global _ordered
    _secrets.clear()
    _ordered = []


class RedactingFormatter(logging.Formatter):
    """Formats with ``inner``, then redacts the whole line (see the module docstring)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record))
