"""The entry points' log formats show each record's structured fields (text and JSON lines)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial

import pytest

from marketpulse.errors import MarketDataError, PermanentSourceError
from marketpulse.market.provider_guard import FetchPolicy, GuardedProvider
from marketpulse.market.quotes import Bar, StockData
from marketpulse.observability.log_format import JsonLineFormatter, KeyValueFormatter, LogFormat
from marketpulse.observability.log_format import configure_logging as install


class Answering:
    """A provider we own: answers AAPL, refuses anything else for good."""

    name = "answering"
    live = True

    async def quote(self, symbol: str, tick: int) -> StockData:
        if symbol != "AAPL":
            raise PermanentSourceError(f"answering: unknown symbol {symbol}")
        return StockData(
            symbol=symbol, price=190.0, volume=10, timestamp=datetime(2026, 1, 2, tzinfo=UTC),
            high=191.0, low=189.0, open=190.0, close=190.0, source=self.name,
        )  # fmt: skip

    async def history(self, symbol: str, tick: int, n: int) -> list[Bar]:
        raise PermanentSourceError("none")


@contextlib.contextmanager
def configured(style: LogFormat) -> Iterator[io.StringIO]:
    """The CLI's logging set-up writing to a buffer; the root logger restored afterwards."""
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    handler = install("INFO", style, stream)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture(params=["text", "json"])
def output(request: pytest.FixtureRequest) -> Iterator[tuple[LogFormat, io.StringIO]]:
    style: LogFormat = request.param
    with configured(style) as stream:
        yield style, stream


async def provider_calls(stream: io.StringIO) -> list[str]:
    guard = GuardedProvider(Answering(), FetchPolicy())
    await guard.call("quote", "AAPL", partial(guard.provider.quote, "AAPL", 0))
    with pytest.raises(MarketDataError):
        await guard.call("quote", "NOSUCH", partial(guard.provider.quote, "NOSUCH", 0))
    return [line for line in stream.getvalue().splitlines() if "provider call" in line]


async def test_a_provider_calls_line_carries_provider_outcome_and_latency(
    output: tuple[LogFormat, io.StringIO],
) -> None:
    style, stream = output
    ok, failed = await provider_calls(stream)
    if style == "text":
        assert re.search(r" INFO marketpulse\.market\.provider_guard: provider call ", ok)
        assert "provider=answering op=quote symbol=AAPL attempt=1 outcome=ok" in ok
        assert re.search(r" latency_ms=\d+(\.\d+)?(e-\d+)?( |$)", ok)
        assert "error=" not in ok  # None fields are left out
        assert " WARNING " in failed
        assert "outcome=permanent" in failed
        assert 'error="answering: unknown symbol NOSUCH"' in failed  # spaces: quoted
    else:
        one, two = json.loads(ok), json.loads(failed)
        assert one["logger"] == "marketpulse.market.provider_guard"
        assert (one["level"], one["message"]) == ("INFO", "provider call")
        assert (one["provider"], one["op"], one["symbol"], one["outcome"]) == (
            "answering", "quote", "AAPL", "ok",
        )  # fmt: skip
        assert isinstance(one["latency_ms"], float) and one["latency_ms"] >= 0
        assert one["error"] is None
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", one["ts"])
        assert (two["level"], two["outcome"]) == ("WARNING", "permanent")
        assert two["error"] == "answering: unknown symbol NOSUCH"


def record(**extra: object) -> logging.LogRecord:
    rec = logging.LogRecord(
        "marketpulse.x", logging.WARNING, __file__, 1, "it %s", ("broke",), None
    )
    rec.__dict__.update(extra)
    return rec


def test_text_quotes_what_would_break_a_key_value_line() -> None:
    line = KeyValueFormatter().format(
        record(reasons=["nse: 500", "yahoo: timed out"], empty="", eq="a=b", n=3, gone=None)
    )
    assert line.endswith('it broke reasons=["nse: 500","yahoo: timed out"] empty="" eq="a=b" n=3')


def test_json_is_one_line_and_never_lets_a_field_shadow_the_core_keys() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        rec = record(level="mine", when=datetime(2026, 1, 2, tzinfo=UTC))
        rec.exc_info = sys.exc_info()
    text = JsonLineFormatter().format(rec)
    assert "\n" not in text
    body = json.loads(text)
    assert (body["level"], body["extra_level"], body["message"]) == ("WARNING", "mine", "it broke")
    assert body["when"] == "2026-01-02 00:00:00+00:00"  # not JSON: str()
    assert "ValueError: bad" in body["exc"]
