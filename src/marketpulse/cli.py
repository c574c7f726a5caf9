"""Command line: parse arguments and call a service; no logic here.

marketpulse serve      run the service (embedded Redis unless MARKETPULSE_REDIS_URL is set)
marketpulse demo       drive a running server: a session, an analysis, a switch, a restart
marketpulse monitor    a console price monitor with alerts
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from marketpulse.config import Settings
from marketpulse.observability.log_format import configure_logging

log = logging.getLogger("marketpulse")


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        for err in exc.errors():
            name = "MARKETPULSE_" + "_".join(str(p) for p in err["loc"]).upper()
            print(f"configuration error: {name}: {err['msg']}", file=sys.stderr)
        raise SystemExit(2) from exc


def serve(settings: Settings) -> int:
    import uvicorn

    from marketpulse.app import create_app
    from marketpulse.infra.redis.embedded import EmbeddedRedis
    from marketpulse.infra.ws.protocol import ws_options

    embedded: EmbeddedRedis | None = None
    if not settings.redis_url:
        embedded = EmbeddedRedis(Path(settings.data_dir) / "redis", durable=True)
        log.info(
            "starting embedded redis-server (%s), data in %s", embedded.binary, embedded.data_dir
        )
        embedded.start()
        settings = settings.model_copy(update={"redis_url": embedded.url})
    try:
        app = create_app(settings, freeze_heap=True)
        log.info(
            "marketpulse on http://%s:%d (data source %s)",
            settings.host,
            settings.port,
            ",".join(settings.data_source),
        )
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            **ws_options(),
            log_level=settings.log_level.lower(),
            log_config=None,  # uvicorn's records go to our root handler, in our format
            timeout_graceful_shutdown=10,
        )
    finally:
        if embedded is not None:
            embedded.stop()
            log.info("embedded redis-server stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="marketpulse", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the service")
    demo = sub.add_parser("demo", help="drive a running server and print each message")
    demo.add_argument("--url", default=None, help="server base URL (default: from settings)")
    mon = sub.add_parser("monitor", help="console price monitor with alerts")
    mon.add_argument("symbols", nargs="+")
    mon.add_argument("--alert", action="append", default=[], help='e.g. "TCS.NS price above 4000"')
    args = parser.parse_args(argv)
    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    if args.command == "serve":
        return serve(settings)
    if args.command == "demo":
        from marketpulse.sessions.demo import run_demo

        url = args.url or f"http://{settings.host}:{settings.port}"
        return asyncio.run(run_demo(url))
    from marketpulse.alerts.console import run_monitor

    return asyncio.run(run_monitor(settings, args.symbols, args.alert))


if __name__ == "__main__":
    raise SystemExit(main())
