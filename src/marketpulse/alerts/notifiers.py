"""Notification channels for fired alerts.

Each notifier raises on failure. On Redis each channel consumes the alert outbox
(``delivery.py``, its ``name`` names its consumer group); in memory the engine runs them
concurrently. Either way each send has its own timeout, a failing or slow channel never blocks
the others, and which delivered (and when) is recorded.

- ``ConsoleNotifier``: one readable line per alert on a text stream (stdout by default).
- ``RedisPublishNotifier``: PUBLISH the alert JSON on ``keys.ALERT_EVENTS``; the WebSocket
  layers forward it (``/ws/alerts`` subscribers, portfolio sessions holding the symbol).
- ``WebhookNotifier``: aiohttp POST of the alert JSON, retried per ``RetryPolicy`` (the app
  passes the market providers' own: full jitter, ``Retry-After`` honoured) on connection
  errors, timeouts and 5xx/429; any other status fails at once. Every POST of one fire carries
  ``Idempotency-Key: <fire id>`` (the body's ``id``): deliveries are at least once (a retry, a
  reclaimed outbox entry), so a receiver deduplicates on it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
from collections.abc import Awaitable, Callable
from typing import Protocol, TextIO

import aiohttp

from marketpulse.alerts.event import FiredAlert
from marketpulse.errors import TransientSourceError
from marketpulse.infra.redis import keys
from marketpulse.infra.redis.client import RedisClient
from marketpulse.infra.retry import RetryPolicy, Uniform, call_with_retry, retry_after_s

log = logging.getLogger(__name__)


class Notifier(Protocol):
    """A channel; ``send`` returns once delivered and raises if it could not be."""

    name: str

    async def send(self, alert: FiredAlert) -> None: ...


class NotificationFailed(Exception):
    """A channel gave up on an alert (after its retries)."""


class ConsoleNotifier:
    name = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream  # None: whatever sys.stdout is at send time

    async def send(self, alert: FiredAlert) -> None:
        stream = self._stream if self._stream is not None else sys.stdout
        print(alert.describe(), file=stream, flush=True)


class RedisPublishNotifier:
    name = "websocket"

    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis

    async def send(self, alert: FiredAlert) -> None:
        """Raises ``RedisUnavailable`` if Redis did not take it."""
        await self._redis.publish(keys.ALERT_EVENTS, alert.model_dump_json())


class WebhookNotifier:
    name = "webhook"

    def __init__(
        self,
        url: str,
        *,
        retry: RetryPolicy | None = None,
        timeout_s: float = 5.0,
        session: aiohttp.ClientSession | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        uniform: Uniform = random.uniform,
    ) -> None:
        self.url = url
        self.retry = retry or RetryPolicy()
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._sleep = sleep
        self._uniform = uniform
        self._session = session
        self._owned: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is not None:
            return self._session
        if self._owned is None or self._owned.closed:
            self._owned = aiohttp.ClientSession(timeout=self._timeout)
        return self._owned

    async def close(self) -> None:
        if self._owned is not None:
            await self._owned.close()
            self._owned = None

    async def _post_once(self, body: str, key: str) -> None:
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        try:
            async with self._client().post(
                self.url, data=body, headers=headers, timeout=self._timeout
            ) as resp:
                if resp.status == 429 or resp.status >= 500:
                    raise TransientSourceError(
                        f"webhook answered {resp.status}",
                        retry_after=retry_after_s(resp.headers.get("Retry-After")),
                    )
                if resp.status >= 400:
                    raise NotificationFailed(f"webhook refused the alert: HTTP {resp.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientSourceError(f"webhook unreachable: {exc!r}") from exc

    async def send(self, alert: FiredAlert) -> None:
        await self.post(alert.model_dump_json(), alert.id)

    async def post(self, body: str, key: str) -> None:
        """POST ``body`` (JSON) with ``Idempotency-Key: key``, retried per the policy."""

        def retrying(attempt: int, error: TransientSourceError, delay: float) -> None:
            log.warning(
                "webhook attempt %d failed: %s; retrying in %.3f s", attempt, error.message, delay
            )

        try:
            await call_with_retry(
                lambda _attempt: self._post_once(body, key),
                self.retry,
                sleep=self._sleep,
                uniform=self._uniform,
                on_retry=retrying,
            )
        except TransientSourceError as exc:
            raise NotificationFailed(
                f"webhook failed after {self.retry.max_attempts} attempts: {exc.message}"
            ) from exc
