"""Command line: parse arguments and call a service; no logic here.

marketpulse serve      run the service (embedded Redis unless --redis-url or
                       MARKETPULSE_REDIS_URL is given)
marketpulse worker     run analysis runs from the service's Redis (MARKETPULSE_REDIS_URL)
marketpulse demo       drive a running server: a session, an analysis, a switch, a restart
marketpulse monitor    a console price monitor with alerts

Settings come from the ``MARKETPULSE_*`` environment and, under it, from ``.env`` in the working
directory (``config.Settings``); ``serve`` also takes the ones a user reaches for first as flags
(``--host``, ``--port``, ``--data-source``, ``--redis-url``, ``--market-interval``,
``--log-level``, ``--data-dir``), which win over both. The flags reach ``Settings`` as strings,
so pydantic validates them exactly as it does the environment: a bad value of any prints
``configuration error: <name>: <reason>`` and exits 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

from pydantic import ValidationError

from marketpulse.config import Settings, env_file
from marketpulse.observability.log_format import configure_logging

log = logging.getLogger("marketpulse")

# serve's flags: settings field -> (metavar, what it sets)
SERVE_FLAGS: dict[str, tuple[str, str]] = {
    "host": ("ADDR", "address to listen on"),
    "port": ("PORT", "port to listen on"),
    "data_source": ("NAMES", "simulated, replay, yahoo or nse; a comma list is a fallback chain"),
    "redis_url": ("URL", "Redis to use; unset: an embedded redis-server under --data-dir"),
    "market_interval": ("SECONDS", "seconds between revaluations"),
    "log_level": ("LEVEL", "DEBUG, INFO, WARNING, ERROR or CRITICAL"),
    "data_dir": ("DIR", "the embedded Redis's data and yfinance's caches"),
}


def flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def env_var(field: str) -> str:
    return "MARKETPULSE_" + field.upper()


def add_serve_flags(parser: argparse.ArgumentParser) -> None:
    for field, (metavar, meaning) in SERVE_FLAGS.items():
        default = Settings.model_fields[field].default
        shown = ",".join(default) if isinstance(default, tuple) else default
        parser.add_argument(
            flag(field),
            dest=field,
            metavar=metavar,
            default=None,  # unset: the environment, then .env, then the built-in default
            help=f"{meaning} (default: {shown if shown is not None else 'unset'}; "
            f"overrides {env_var(field)})",
        )


def source_name(field: str, flags: Mapping[str, str]) -> str:
    """Where a bad value came from: its flag, its variable, or its variable in the dotenv file."""
    if field in flags:
        return flag(field)
    name = env_var(field)
    dotenv = env_file()
    if name not in os.environ and dotenv is not None and Path(dotenv).is_file():
        return f"{name} (in {dotenv})"
    return name


def _settings(flags: Mapping[str, str] | None = None) -> Settings:
    """The settings: ``flags`` (by field name) over the environment over ``.env`` over the
    defaults."""
    given = dict(flags or {})
    try:
        return Settings(**given)  # type: ignore[arg-type]  # strings, validated like the env
    except ValidationError as exc:
        for err in exc.errors():
            field = "_".join(str(p) for p in err["loc"])
            print(
                f"configuration error: {source_name(field, given)}: {err['msg']}", file=sys.stderr
            )
        raise SystemExit(2) from exc


def serve_settings(args: argparse.Namespace) -> Settings:
    """``serve``'s settings: the flags given on the command line over the environment."""
    return _settings(
        {f: getattr(args, f) for f in SERVE_FLAGS if getattr(args, f, None) is not None}
    )


def serve(settings: Settings) -> int:
    import uvicorn

    from marketpulse.app import create_app
    from marketpulse.infra.redis.embedded import EmbeddedRedis
    from marketpulse.infra.ws.protocol import ws_options

    embedded: EmbeddedRedis | None = None
    if not settings.redis_url:
        embedded = EmbeddedRedis(Path(settings.data_dir) / "redis", durable=True, password=True)
        log.info(
            "starting embedded redis-server (%s) on 127.0.0.1, data in %s, password in %s",
            embedded.binary,
            embedded.data_dir,
            embedded.auth_conf,
        )
        embedded.start()
        settings = settings.model_copy(update={"redis_url": embedded.url})
        signal.signal(signal.SIGTERM, _raise_terminated)  # uvicorn restores it at its exit
    terminated = False
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
            **ws_options(settings.ws_ping_interval, settings.ws_ping_timeout),
            log_level=settings.log_level.lower(),
            log_config=None,  # uvicorn's records go to our root handler, in our format
            timeout_graceful_shutdown=10,
        )
    except _Terminated:
        terminated = True  # uvicorn has shut down; stop Redis, then end as SIGTERM would
    finally:
        if embedded is not None:
            embedded.stop()
            log.info("embedded redis-server stopped")
    if terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.raise_signal(signal.SIGTERM)
    return 0


class _Terminated(Exception):
    """SIGTERM, seen by ``serve`` with an embedded Redis. uvicorn re-raises the signal it caught
    once it has shut down gracefully; with the default action the process would end right
    there and leave the embedded redis-server (in a session of its own) running. Raised
    instead, it lets ``serve`` stop Redis first and then end by SIGTERM as before."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated()


def worker(settings: Settings) -> int:
    from marketpulse.app import run_worker

    if not settings.redis_url:
        print(
            "configuration error: marketpulse worker needs MARKETPULSE_REDIS_URL", file=sys.stderr
        )
        return 2

    async def until_signalled() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(settings, stop)

    asyncio.run(until_signalled())
    return 0


SERVE_DESCRIPTION = (
    "Run the service. Each flag overrides its MARKETPULSE_* variable; every setting is read "
    "from the environment, else from .env in the working directory (MARKETPULSE_ENV_FILE names "
    "another file), else its default."
)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="marketpulse", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add_serve_flags(sub.add_parser("serve", help="run the service", description=SERVE_DESCRIPTION))
    sub.add_parser("worker", help="run analysis runs taken from the service's Redis")
    demo = sub.add_parser("demo", help="drive a running server and print each message")
    demo.add_argument("--url", default=None, help="server base URL (default: from settings)")
    mon = sub.add_parser("monitor", help="console price monitor with alerts")
    mon.add_argument("symbols", nargs="+")
    mon.add_argument("--alert", action="append", default=[], help='e.g. "TCS.NS price above 4000"')
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    settings = serve_settings(args) if args.command == "serve" else _settings()
    configure_logging(settings.log_level, settings.log_format)
    if args.command == "serve":
        return serve(settings)
    if args.command == "worker":
        return worker(settings)
    if args.command == "demo":
        from marketpulse.sessions.demo import run_demo

        url = args.url or f"http://{settings.host}:{settings.port}"
        return asyncio.run(run_demo(url))
    from marketpulse.alerts.console import run_monitor

    return asyncio.run(run_monitor(settings, args.symbols, args.alert))


def serve_main(argv: list[str] | None = None, prog: str = "marketpulse serve") -> int:
    """``marketpulse serve`` as a program of its own, with the same flags (the root ``main.py``)."""
    parser = argparse.ArgumentParser(prog=prog, description=SERVE_DESCRIPTION)
    add_serve_flags(parser)
    settings = serve_settings(parser.parse_args(argv))
    configure_logging(settings.log_level, settings.log_format)
    return serve(settings)


if __name__ == "__main__":
    raise SystemExit(main())
