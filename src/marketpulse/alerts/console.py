"""``marketpulse monitor SYMBOL... --alert "TCS.NS price above 4000"``: quotes and alerts, live.

Alert spec mini-language: ``SYMBOL (price|change|volume) (above|below) NUMBER`` where ``change``
is the % change vs the previous close and ``volume`` the multiple of the mean of the last 20
volumes. Runs until SIGINT or SIGTERM, then stops within the monitor's shutdown bound, exit 0;
a bad spec or symbol prints the reason and exits 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from marketpulse.alerts.engine import AlertManager
from marketpulse.alerts.rules import AlertCondition, AlertType
from marketpulse.alerts.stock_monitor import StockMonitor
from marketpulse.config import Settings
from marketpulse.errors import ValidationFailed
from marketpulse.market.clock import WallTickClock
from marketpulse.market.fetcher import DataFetcher, calendars_for, providers_for
from marketpulse.market.quotes import StockData
from marketpulse.market.symbols import check_symbol

CONSOLE_TICK_S = 5.0
KINDS = {
    "price": AlertType.PRICE_THRESHOLD,
    "change": AlertType.PERCENTAGE_CHANGE,
    "volume": AlertType.VOLUME_SPIKE,
}
SPEC_HELP = (
    'expected "SYMBOL (price|change|volume) (above|below) NUMBER", e.g. "TCS.NS price above 4000"'
)


def parse_alert(spec: str) -> AlertCondition:
    """One alert from the mini-language; raises ValidationFailed with the reason."""
    parts = spec.split()
    if len(parts) != 4:
        raise ValidationFailed(f"alert {spec!r}: {SPEC_HELP}", code="invalid_alert")
    symbol, kind, comparison, number = parts
    if kind.lower() not in KINDS:
        raise ValidationFailed(
            f"alert {spec!r}: unknown kind {kind!r}; use price, change or volume",
            code="invalid_alert",
        )
    try:
        threshold = float(number)
    except ValueError as exc:
        raise ValidationFailed(
            f"alert {spec!r}: {number!r} is not a number", "invalid_alert"
        ) from exc
    try:
        return AlertCondition(
            symbol=symbol,
            alert_type=KINDS[kind.lower()],
            threshold=threshold,
            comparison=comparison,
        )
    except ValidationError as exc:
        reasons = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise ValidationFailed(f"alert {spec!r}: {reasons}", code="invalid_alert") from exc


def print_quote(quote: StockData) -> None:
    flag = " STALE" if quote.stale else ""
    if quote.market_open is False:  # a live source's closed exchange: its closing print
        flag += f" CLOSED (session {quote.session_date})"
    print(
        f"{quote.timestamp.isoformat()} {quote.symbol:<12} {quote.price:>12.2f} "
        f"vol {quote.volume:>12} [{quote.source}]{flag}",
        flush=True,
    )


async def run_monitor(
    settings: Settings, symbols: Sequence[str], alert_specs: Sequence[str]
) -> int:
    """Monitor ``symbols`` with the standalone stack (the configured market, alerts in memory)
    until a signal."""
    try:
        wanted = [check_symbol(s) for s in symbols]
        conditions = [parse_alert(s) for s in alert_specs]
    except ValidationFailed as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    # the configured market; a new tick every 5 s so the console shows movement; a live
    # market keeps its exchanges' hours as the service does
    chain = providers_for(settings)
    calendars = calendars_for(chain) if settings.market_hours else None
    fetcher = DataFetcher(chain, clock=WallTickClock(CONSOLE_TICK_S), calendars=calendars)
    alerts = AlertManager.in_memory()  # standalone: these alerts live as long as the command
    for c in conditions:
        await alerts.add_alert(c)
    monitor = StockMonitor(
        fetcher, None, alerts, interval_s=min(settings.monitor_interval, 1.0), on_quote=print_quote
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with monitor:
            await monitor.start_monitoring(wanted)
            await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(sig)
        await fetcher.close()
    return 0
