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

The redaction works on the finished line, not on the record, so no way of passing a value
(``%s`` arguments, ``extra``, an exception's text) goes around it.
"""

from __future__ import annotations

import logging
import re

REDACTED = "[redacted]"

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
    return text


class RedactingFormatter(logging.Formatter):
    """Formats with ``inner``, then redacts the whole line (see the module docstring)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.inner.format(record))
