"""How a session socket carries its token without putting it in the URL (pure).

A client offers two WebSocket subprotocols in the handshake's ``Sec-WebSocket-Protocol``
header: ``marketpulse.v1`` and ``marketpulse.token.<token>``. The server answers with
``marketpulse.v1`` only, so the token is never echoed. Headers are not logged by the server
(URLs are: a request line names its query string), a browser's ``new WebSocket(url,
protocols)`` can send them (it cannot send ``Authorization``), and the token needs no
extra round trip or server state, unlike a one-use ticket. Session tokens are
``secrets.token_urlsafe`` text, which is valid in a subprotocol name (RFC 6455 4.1, an HTTP
token). ``?token=`` still works for existing clients; the subprotocol wins when both are given.
"""

from __future__ import annotations

from collections.abc import Iterable

PROTOCOL = "marketpulse.v1"
TOKEN_PREFIX = "marketpulse.token."


def subprotocols(token: str) -> list[str]:
    """What a client offers to open a session socket with ``token``."""
    return [PROTOCOL, TOKEN_PREFIX + token]


def offered_token(offered: Iterable[str]) -> str | None:
    """The token a client offered as a subprotocol, if any (the first one)."""
    for name in offered:
        if name.startswith(TOKEN_PREFIX):
            return name[len(TOKEN_PREFIX) :]
    return None


def chosen_protocol(offered: Iterable[str]) -> str | None:
    """The subprotocol the server answers: ``marketpulse.v1`` when offered, else none (never
    the token's)."""
    return PROTOCOL if PROTOCOL in offered else None
