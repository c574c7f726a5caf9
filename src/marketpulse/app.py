"""``create_app(settings)``: every component is built here, not at import time.

The lifespan owns the long-lived tasks (event hub reader, valuation loop, alert monitor, the
alert deliveries from the outbox, loop-lag monitor, the dashboards' system report, and the run
worker unless
``MARKETPULSE_WORKERS_IN_PROCESS=false``) in one TaskGroup with a stop event; on shutdown it
stops them, cancels and awaits every analysis run, hands the worker's runs back to the run
stream, and closes Redis. ``run_worker(settings)`` is ``marketpulse worker``: the same engine
and run worker without the web edge. The lifespan yields one typed
state (``AppState``): each feature's edge declares the part it reads (``SessionsState``,
``AlertsState``, ``MarketState``, ``ObservabilityState``, ``DashboardState``) and Starlette hands
it to every request and socket as ``scope["state"]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from marketpulse.alerts import channels_http as routes_channels
from marketpulse.alerts import http as routes_alerts
from marketpulse.alerts.channel_delivery import ChannelDeliveries
from marketpulse.alerts.channel_service import ChannelService
from marketpulse.alerts.channel_store import RedisChannelStore
from marketpulse.alerts.channels import Channel
from marketpulse.alerts.channels_http import ChannelsState
from marketpulse.alerts.engine import AlertManager
from marketpulse.alerts.http import AlertsState
from marketpulse.alerts.indicator_feed import IndicatorFeed
from marketpulse.alerts.monitor import MonitorService
from marketpulse.alerts.notifiers import (
    ConsoleNotifier,
    Notifier,
    RedisPublishNotifier,
    WebhookNotifier,
)
from marketpulse.alerts.outbox import AlertOutbox
from marketpulse.alerts.portfolio import PortfolioAlerts
from marketpulse.alerts.portfolio_store import PortfolioAlertStore
from marketpulse.alerts.senders import Sender, SmtpConfig, sender_for
from marketpulse.alerts.store import RedisAlertStore
from marketpulse.config import Settings
from marketpulse.errors import RedisUnavailable
from marketpulse.infra.body_limit import BodyLimitMiddleware
from marketpulse.infra.http_errors import error_body, error_responses, install_error_handlers
from marketpulse.infra.redis.client import RedisClient
from marketpulse.infra.redis.outage import OutageLog
from marketpulse.infra.ws.limits import ConnectionCounts, WsLimits
from marketpulse.market import http as routes_quotes
from marketpulse.market.clock import RedisTickClock
from marketpulse.market.events import RedisQuotePublisher
from marketpulse.market.fetcher import DataFetcher, build_fetcher
from marketpulse.market.http import MarketState
from marketpulse.market.providers import make_tick_source
from marketpulse.market.view import Market
from marketpulse.observability import http as routes_dashboard
from marketpulse.observability import ws as ws_dashboard
from marketpulse.observability.http import ObservabilityState
from marketpulse.observability.http_metrics import HttpMetricsMiddleware
from marketpulse.observability.loop_lag import LoopLagMonitor
from marketpulse.observability.redaction import register_secrets
from marketpulse.observability.system_feed import SystemFeed
from marketpulse.observability.telemetry import Telemetry
from marketpulse.sessions import alerts_http as routes_portfolio_alerts
from marketpulse.sessions import http as routes_sessions
from marketpulse.sessions import ws as ws_sessions
from marketpulse.sessions.analysis import AnalysisEngine
from marketpulse.sessions.http import SessionsState
from marketpulse.sessions.migrate import migrate, migrate_until_done
from marketpulse.sessions.runs import RunQueue
from marketpulse.sessions.service import SessionService
from marketpulse.sessions.store import SessionStore
from marketpulse.sessions.valuation import ValuationLoop
from marketpulse.sessions.worker import RunWorker

log = logging.getLogger(__name__)

TICK_SOURCES = ("simulated", "replay")


class AppState(SessionsState, AlertsState, MarketState, ObservabilityState, ChannelsState):
    """Everything the lifespan builds, as the edges read it (``scope["state"]``)."""

    settings: Settings
    redis: RedisClient
    market: Market
    valuation: ValuationLoop
    portfolio_alerts: PortfolioAlerts
    allowed_origins: frozenset[str]


def _market(settings: Settings, fetcher: DataFetcher) -> Market:
    first = settings.data_source[0]
    if first in TICK_SOURCES:
        return Market(
            source=make_tick_source(
                first,
                seed=settings.seed,
                replay_start=settings.replay_start,
                replay_step=settings.replay_step,
            ),
            reference=fetcher.reference_rates(),
        )
    return Market(feed=fetcher)


class MarketPulseApp(FastAPI):
    """FastAPI, except that a session socket's handshake goes straight to its endpoint
    (``sessions/ws.py``, ``direct_session_socket``): the middleware, router and exit-stack
    frames that would otherwise live as long as each socket are not built for it."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sid = ws_sessions.direct_session_id(scope)
        if sid is None:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        await ws_sessions.direct_session_socket(scope, receive, send, sid)


def create_app(settings: Settings, *, freeze_heap: bool = False) -> FastAPI:
    if not settings.redis_url:
        raise ValueError("create_app needs settings.redis_url (marketpulse serve starts one)")
    telemetry = Telemetry.from_settings(settings)
    readiness = OutageLog("readiness")  # a probe every second logs an outage once, not per probe

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[AppState]:
        assert settings.redis_url is not None
        redis = RedisClient.from_url(settings.redis_url, settings.redis_max_connections)
        cache_redis = (
            RedisClient.from_url(settings.cache_url, settings.redis_max_connections)
            if settings.cache_url
            else None
        )
        # the data in the partitioned key layout before anything reads it (once; see migrate.py)
        migrating = False
        try:
            await migrate(redis, stream_maxlen=settings.run_stream_maxlen)
        except RedisUnavailable:
            migrating = True  # Redis unreachable: the lifespan task below retries
        fetcher = build_fetcher(settings, redis, cache_redis, telemetry)
        telemetry.watch_cache_outages(
            lambda: (
                fetcher.cache_guard.failures,
                fetcher.cache_guard.bypassed,
                fetcher.tick_guard.failures,
            )
        )
        market = _market(settings, fetcher)
        store = _store(settings, redis)
        clock = RedisTickClock(redis)
        portfolio_alerts = PortfolioAlerts(PortfolioAlertStore(redis))  # the sessions' watcher
        engine = _engine(settings, store, market, telemetry, portfolio_alerts)
        worker = (
            RunWorker(engine, RunQueue(redis), reclaim_s=settings.run_reclaim_s)
            if settings.workers_in_process
            else None
        )
        valuation = ValuationLoop(
            store,
            market,
            interval_s=settings.market_interval,
            telemetry=telemetry,
            clock=clock,
            watch=portfolio_alerts,
        )
        alerts, monitor = _alerts_wiring(settings, redis, fetcher, telemetry)
        channels, channel_deliveries = _channels_wiring(settings, redis, fetcher, alerts)
        system_feed = SystemFeed(telemetry, redis, fetcher, interval_s=settings.system_interval)
        state = AppState(
            settings=settings,
            redis=redis,
            fetcher=fetcher,
            market=market,
            store=store,
            hub=redis.hub,
            engine=engine,
            valuation=valuation,
            portfolio_alerts=portfolio_alerts,
            sessions=SessionService(
                store, market, clock, base_currency=settings.base_currency, watch=portfolio_alerts
            ),
            alerts=alerts,
            monitor=monitor,
            system_feed=system_feed,
            telemetry=telemetry,
            allowed_origins=settings.origins(),
            ws_counts=ConnectionCounts(ws_limits(settings)),
            channels=channels,
        )
        stop = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(redis.run(stop), name="event-hub")
                if migrating:
                    tg.create_task(
                        migrate_until_done(redis, stop, stream_maxlen=settings.run_stream_maxlen),
                        name="migration",
                    )
                tg.create_task(valuation.run(stop), name="valuation")
                tg.create_task(LoopLagMonitor(telemetry).run(stop), name="loop-lag")
                tg.create_task(system_feed.run(stop), name="system-feed")
                tg.create_task(monitor.run(stop), name="monitor")
                tg.create_task(alerts.run_deliveries(stop), name="alert-delivery")
                tg.create_task(channel_deliveries.run(stop), name="channel-delivery")
                if worker is not None:
                    tg.create_task(worker.run(stop), name="run-worker")
                if freeze_heap:
                    # what start-up built lives as long as the process: keep it out of the
                    # collector's scans (a full collection in a burst paused the server; the
                    # README's benchmarks section has the figures)
                    gc.collect()
                    gc.freeze()
                try:
                    yield state
                finally:
                    stop.set()
                    await engine.shutdown()
        finally:
            await fetcher.close()
            await redis.aclose()
            if cache_redis is not None:
                await cache_redis.aclose()

    app = MarketPulseApp(
        title="marketpulse",
        version="0.1.0",
        description="Live portfolio analysis sessions and price alerts on Redis.",
        lifespan=lifespan,
        responses=error_responses(413),  # any operation, past MARKETPULSE_HTTP_MAX_BODY
    )
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.http_max_body)
    app.add_middleware(HttpMetricsMiddleware, telemetry=telemetry)
    app.include_router(routes_sessions.router)
    app.include_router(routes_portfolio_alerts.router)
    app.include_router(ws_sessions.router)
    app.include_router(ws_dashboard.router)
    app.include_router(routes_quotes.router)
    app.include_router(routes_alerts.router)
    app.include_router(routes_channels.router)
    app.include_router(routes_dashboard.router)
    routes_dashboard.mount_dashboard(app)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["ops"],
        response_model=None,
        responses=error_responses(503, described={503: "`redis_unavailable`: not ready"}),
    )
    async def readyz(request: Request) -> dict[str, Any] | JSONResponse:
        started = time.perf_counter()
        redis: RedisClient = request.state.redis
        try:
            await redis.ping()
            tick = await RedisTickClock(redis).tick()
        except RedisUnavailable as exc:
            readiness.failed(redis.url, exc)
            return JSONResponse(error_body("redis_unavailable", "Redis did not answer"), 503)
        readiness.answered(redis.url)
        return {
            "status": "ready",
            "redis_ms": round((time.perf_counter() - started) * 1000, 3),
            "tick": tick,
        }

    return app


def ws_limits(settings: Settings) -> WsLimits:
    """The WebSocket limits the settings name (infra/ws/limits.py)."""
    return WsLimits(
        msg_rate=settings.ws_msg_rate,
        msg_hard_rate=max(settings.ws_msg_hard_rate, settings.ws_msg_rate),
        max_per_session=settings.ws_max_per_session,
        max_per_client=settings.ws_max_per_client,
        send_buffer=settings.ws_send_buffer,
    )


def _store(settings: Settings, redis: RedisClient) -> SessionStore:
    return SessionStore(
        redis,
        ttl_s=settings.session_ttl,
        results_cap=settings.results_cap,
        run_reclaim_s=settings.run_reclaim_s,
        run_stream_maxlen=settings.run_stream_maxlen,
    )


def _engine(
    settings: Settings,
    store: SessionStore,
    market: Market,
    telemetry: Telemetry,
    watch: PortfolioAlerts | None,
) -> AnalysisEngine:
    return AnalysisEngine(
        store,
        market,
        delay=settings.delay,
        max_restarts=settings.max_restarts,
        telemetry=telemetry,
        watch=watch,  # committed results reach the session's metric alerts
    )


async def run_worker(settings: Settings, stop: asyncio.Event) -> None:
    """``marketpulse worker``: take analysis runs from the run stream until ``stop``, then hand
    the ones in flight back. Needs ``settings.redis_url`` (the service's Redis)."""
    if not settings.redis_url:
        raise ValueError("marketpulse worker needs MARKETPULSE_REDIS_URL (the service's Redis)")
    telemetry = Telemetry.from_settings(settings)
    redis = RedisClient.from_url(settings.redis_url, settings.redis_max_connections)
    fetcher = build_fetcher(settings, redis, None, telemetry)
    store = _store(settings, redis)
    watch = PortfolioAlerts(PortfolioAlertStore(redis))  # a worker's results reach them too
    engine = _engine(settings, store, _market(settings, fetcher), telemetry, watch)
    try:
        await migrate_until_done(redis, stop, stream_maxlen=settings.run_stream_maxlen)
        await RunWorker(engine, RunQueue(redis), reclaim_s=settings.run_reclaim_s).run(stop)
    finally:
        await engine.shutdown()
        await fetcher.close()
        await redis.aclose()


def _alerts_wiring(
    settings: Settings, redis: RedisClient, fetcher: DataFetcher, telemetry: Telemetry
) -> tuple[AlertManager, MonitorService]:
    """The alert engine and the monitor (whose loop the lifespan owns)."""
    notifiers: list[Notifier] = [ConsoleNotifier(), RedisPublishNotifier(redis)]
    if settings.webhook_url:
        notifiers.append(WebhookNotifier(settings.webhook_url, retry=fetcher.policy.retry))
    alerts = AlertManager(
        RedisAlertStore(redis),
        notifiers,
        redis=redis,
        telemetry=telemetry,
        reclaim_s=settings.alert_reclaim_s,
        delivery_attempts=settings.alert_delivery_attempts,
        max_alerts=settings.max_alerts,
        quotes=fetcher.cache,  # a new alert is evaluated at once against the latest quote
        indicators=IndicatorFeed(fetcher),  # indicator rules: books from the fetcher's history
    )
    tick_mode = settings.data_source[0] in TICK_SOURCES
    # a first run shows what the market has: replay has no NSE symbols, say, and a symbol no
    # source has would log a missing quote every tick
    watchlist = [s for s in settings.watchlist if fetcher.may_quote(s)]
    if left_out := [s for s in settings.watchlist if s not in watchlist]:
        log.info("default watchlist without %s: no data source of %s has them",
                 ", ".join(left_out), ",".join(settings.data_source))  # fmt: skip
    monitor = MonitorService(
        fetcher,
        alerts,
        redis=redis,
        clock=RedisTickClock(redis) if tick_mode else None,
        cache=None,  # the fetcher caches every quote it fetches
        publisher=RedisQuotePublisher(redis),  # live prices of /ws/dashboard
        watchlist=watchlist,  # a first run monitors these (never re-added once chosen)
        max_symbols=settings.max_symbols,
        interval_s=(
            min(settings.monitor_interval, settings.market_interval)
            if tick_mode
            else settings.monitor_interval
        ),
    )
    return alerts, monitor


def _channels_wiring(
    settings: Settings, redis: RedisClient, fetcher: DataFetcher, alerts: AlertManager
) -> tuple[ChannelService, ChannelDeliveries]:
    """The named channels (issue 20): their service (the API's) and their deliveries (a
    lifespan task); an alert that re-arms queues its back-to-normal message through them."""
    if settings.smtp_password:
        register_secrets([settings.smtp_password])
    smtp = SmtpConfig(
        host=settings.smtp_host,
        port=settings.smtp_port,
        user=settings.smtp_user,
        password=settings.smtp_password,
        sender=settings.smtp_from,
        starttls=settings.smtp_starttls,
        ca_file=settings.smtp_ca_file,
        timeout_s=settings.channel_timeout_s,
    )

    def make_sender(channel: Channel) -> Sender:
        return sender_for(
            channel, smtp, retry=fetcher.policy.retry, timeout_s=settings.channel_timeout_s
        )

    store = RedisChannelStore(redis)
    service = ChannelService(
        store,
        make_sender,
        max_channels=settings.max_channels,
        timeout_s=settings.channel_timeout_s,
        on_secrets=register_secrets,
    )
    deliveries = ChannelDeliveries(
        AlertOutbox(redis),
        store,
        make_sender,
        reclaim_s=settings.alert_reclaim_s,
        max_attempts=settings.alert_delivery_attempts,
        notify_timeout_s=settings.channel_timeout_s,
        on_secrets=register_secrets,
    )
    alerts.on_rearmed = service.cleared
    return service, deliveries
