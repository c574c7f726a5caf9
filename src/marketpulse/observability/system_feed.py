"""The System report of one instance (``GET /api/system``) and its live feed for dashboards.

``SystemFeed.report()`` builds the report fresh: Redis health (a PING and its round trip), each
data provider's circuit state and counts, and the telemetry's live figures (connected clients,
active sessions, loop lag, memory, recent health warnings, limits).

For ``/ws/dashboard`` the feed runs once per instance, in the app's lifespan task group: every
``interval_s`` it builds one report, serialises it once as a ``{"type": "system", ...}`` frame
and hands it to every listening connection, so N dashboards cost one report per interval, and
none while nobody listens. A listener holds at most one pending frame: a slow client skips to
the newest report instead of queueing old ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

from marketpulse.errors import MarketPulseError, RedisUnavailable
from marketpulse.infra.redis.client import RedisClient
from marketpulse.infra.redis.outage import OutageLog
from marketpulse.observability.telemetry import Telemetry

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 2.0


class SystemFeed:
    """One instance's System report, on demand and as a periodic frame for listeners."""

    def __init__(
        self,
        telemetry: Telemetry,
        redis: RedisClient | None = None,
        fetcher: object | None = None,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
    ) -> None:
        self.telemetry = telemetry
        self.interval_s = interval_s
        self._redis = redis
        self._fetcher = fetcher
        self._listeners: set[asyncio.Queue[str]] = set()
        self.outage = OutageLog("system feed")

    @property
    def listener_count(self) -> int:
        return len(self._listeners)

    async def report(self) -> dict[str, Any]:
        """``{"redis": {"ok", "latency_ms"}, "providers": [...], "connected_clients",
        "active_sessions", "loop_lag_ms", "rss_bytes", "health_warnings", "limits",
        "asyncio_tasks"}``."""
        body: dict[str, Any] = {"redis": await self._redis_health()}
        body["providers"] = await self._providers()
        body.update(self.telemetry.snapshot())
        body["asyncio_tasks"] = len(asyncio.all_tasks())  # back to its idle count when idle
        return body

    async def frame(self) -> str:
        """The report as a ``{"type": "system", ...}`` WebSocket frame."""
        return json.dumps({"type": "system", **await self.report()})

    @contextlib.contextmanager
    def listen(self) -> Iterator[asyncio.Queue[str]]:
        """A queue receiving each periodic frame while the context is open (newest only)."""
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
        self._listeners.add(queue)
        try:
            yield queue
        finally:
            self._listeners.discard(queue)

    async def run_once(self) -> int:
        """Build one frame and hand it to every listener; returns how many got it."""
        if not self._listeners:
            return 0
        text = await self.frame()
        listeners = list(self._listeners)
        for queue in listeners:
            if queue.full():
                queue.get_nowait()  # the client has not taken the last one: replace it
            queue.put_nowait(text)
        return len(listeners)

    async def run(self, stop: asyncio.Event) -> None:
        """Every ``interval_s`` until ``stop``; a failed report is logged and retried next time
        (a Redis outage once when it starts and once when it ends: the report itself shows
        Redis down, so it fails only if something else of it needs Redis)."""
        while not stop.is_set():
            try:
                await self.run_once()
            except RedisUnavailable as exc:
                self.outage.failed(exc.url or "redis", exc)
            except MarketPulseError as exc:
                log.warning("system report failed: %r", exc)
            else:
                for url in self.outage.down():
                    self.outage.answered(url)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval_s)

    async def _redis_health(self) -> dict[str, Any]:
        if self._redis is None:
            return {"ok": False, "latency_ms": None, "error": "not configured"}
        started = time.perf_counter()
        try:
            await self._redis.ping()
        except RedisUnavailable as exc:  # named by its cause: ConnectionError, TimeoutError...
            cause = exc.__cause__ or exc
            return {"ok": False, "latency_ms": None, "error": type(cause).__name__}
        return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000.0, 3)}

    async def _providers(self) -> list[dict[str, Any]]:
        status = getattr(self._fetcher, "provider_status", None)
        if status is None:
            return []
        result = status()
        if inspect.isawaitable(result):
            result = await result
        rows: list[dict[str, Any]] = []
        for item in result or ():
            if isinstance(item, dict):
                raw = dict(item)
            elif hasattr(item, "model_dump"):
                raw = item.model_dump(mode="json")
            else:
                raw = {k: v for k, v in vars(item).items() if not k.startswith("_")}
            rows.append(provider_row(raw))
        return rows


def provider_row(raw: dict[str, Any]) -> dict[str, Any]:
    """One provider in the dashboard's shape, whichever of the known spellings the fetcher used."""

    def first(*names: str) -> Any:
        return next((raw[n] for n in names if raw.get(n) is not None), None)

    return {
        **raw,
        "name": first("name", "provider"),
        "state": first("state", "circuit"),
        "last_error": first("last_error"),
        "last_latency_ms": first("last_latency_ms"),
        "ok": first("ok", "calls_ok"),
        "failed": first("failed", "calls_failed"),
    }
