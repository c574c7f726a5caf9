"""One log line when a Redis stops answering a loop, one when it answers again.

A loop that touches Redis every tick would otherwise log every failed operation. ``OutageLog``
guarantees, per Redis URL (credentials never included): the first failure while it was up logs
one WARNING naming the URL and the error; further failures are counted, not logged; the first
success after that logs one WARNING saying it answers again and how many operations failed
meanwhile. Both are WARNING on purpose: a library user who configured no logging sees the
records at WARNING and above only, and the second line is what tells them the first is over.
"""

from __future__ import annotations

import logging

from redis.asyncio import Redis
from redis.asyncio.connection import SSLConnection, parse_url

from marketpulse.infra.redis.endpoint import Endpoint

log = logging.getLogger(__name__)


def url_of(redis: Redis) -> str:
    """The client's server as a URL for logs (``redis://host:port/db``), no credentials."""
    return Endpoint.of(redis).display()


def display_url(url: str) -> str:
    """``url`` as ``url_of`` shows it (no credentials); ValueError if it is not a Redis URL."""
    c = parse_url(url)
    if "path" in c:
        return f"unix://{c['path']}?db={c.get('db', 0)}"
    scheme = "rediss" if c.get("connection_class") is SSLConnection else "redis"
    return f"{scheme}://{c.get('host', 'localhost')}:{c.get('port', 6379)}/{c.get('db', 0)}"


class OutageLog:
    def __init__(self, who: str) -> None:
        self.who = who  # the loop that reports, e.g. "monitor"
        self._failed: dict[str, int] = {}  # url -> failures since it went down

    def down(self) -> frozenset[str]:
        """The URLs currently reported unreachable."""
        return frozenset(self._failed)

    def failed(self, url: str, error: BaseException) -> None:
        if url in self._failed:
            self._failed[url] += 1
            return
        self._failed[url] = 1
        log.warning(
            "%s: Redis at %s is unreachable (%s); retrying every cycle, logged once until it "
            "answers again",
            self.who,
            url,
            _reason(error),
            extra={"redis_url": url},
        )

    def answered(self, url: str | None) -> None:
        if url is None or url not in self._failed:
            return
        failures = self._failed.pop(url)
        log.warning(
            "%s: Redis at %s answers again (%d failed operations meanwhile)",
            self.who,
            url,
            failures,
            extra={"redis_url": url, "failures": failures},
        )


def _reason(error: BaseException) -> str:
    cause = error
    while cause.__cause__ is not None:  # what failed underneath every translation
        cause = cause.__cause__
    text = str(cause) or type(cause).__name__
    return f"{type(cause).__name__}: {text}" if str(cause) else text
