"""What one client may cost this instance over WebSockets: how fast a socket may send, how
many sockets a session and a client address may hold, how many bytes a socket may leave
unsent. Each is a setting (``MARKETPULSE_WS_*``); the outcomes are in docs/contracts.md
("Limits").

The socket counts are per instance (process memory, not Redis): behind a load balancer a client
may hold that many on each instance. A count is held from the handshake's admission until the
connection ends, and a key whose count falls to zero is forgotten, so the map is bounded by the
sockets open now.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from marketpulse.infra.rate_limit import TokenBucket


@dataclass(frozen=True)
class WsLimits:
    msg_rate: float = 20.0  # messages per second a socket may send on average (burst 2x)
    msg_hard_rate: float = 100.0  # past this (burst 2x) the socket is closed with 1008
    max_per_session: int = 8
    max_per_client: int = 64
    send_buffer: int = 1 << 20  # bytes a socket may leave unsent before it is closed (1008)
    msg_burst: int | None = None  # messages at once; None: twice the rate (at least 1)
    msg_hard_burst: int | None = None  # likewise for the hard rate


class MessageRate:
    """A socket's incoming message rate: ``check()`` answers ``"ok"``, ``"limited"`` (over the
    soft rate: the client gets ``rate_limited``, the message is dropped) or ``"close"`` (over
    the hard rate: the socket is closed with 1008). Over any interval t at most
    ``hard burst + msg_hard_rate * t`` messages are answered before the close, and at
    most ``burst + msg_rate * t`` of them are handled."""

    def __init__(self, limits: WsLimits, *, now: Callable[[], float] = time.monotonic) -> None:
        burst = limits.msg_burst or max(1, int(2 * limits.msg_rate))
        self.soft = TokenBucket(limits.msg_rate, burst, now=now)
        hard = limits.msg_hard_burst or max(burst, int(2 * limits.msg_hard_rate))
        self.hard = TokenBucket(limits.msg_hard_rate, hard, now=now)

    def check(self) -> str:
        if not self.hard.try_acquire():
            return "close"
        return "ok" if self.soft.try_acquire() else "limited"


@dataclass
class ConnectionCounts:
    """Open sockets per session and per client address on this instance."""

    limits: WsLimits = field(default_factory=WsLimits)
    per_session: dict[str, int] = field(default_factory=dict)
    per_client: dict[str, int] = field(default_factory=dict)

    def refusal(self, client: str, session: str | None) -> str | None:
        """Why one more socket of ``client`` (for ``session``) is refused, or None."""
        if self.per_client.get(client, 0) >= self.limits.max_per_client:
            return f"at most {self.limits.max_per_client} open sockets per client address"
        if session is not None and self.per_session.get(session, 0) >= self.limits.max_per_session:
            return f"at most {self.limits.max_per_session} open sockets per session"
        return None

    def add(self, client: str, session: str | None = None) -> None:
        """Count one socket of ``client`` (and ``session``) until ``remove`` (call
        ``refusal`` first: this admits unconditionally)."""
        _add(self.per_client, client, 1)
        if session is not None:
            _add(self.per_session, session, 1)

    def remove(self, client: str, session: str | None = None) -> None:
        _add(self.per_client, client, -1)
        if session is not None:
            _add(self.per_session, session, -1)

    @contextlib.contextmanager
    def held(self, client: str, session: str | None = None) -> Iterator[None]:
        """``add`` while the block runs, then ``remove``."""
        self.add(client, session)
        try:
            yield
        finally:
            self.remove(client, session)


def _add(counts: dict[str, int], key: str, n: int) -> None:
    left = counts.get(key, 0) + n
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)  # forgotten at zero: the map holds only sockets open now
