"""``marketpulse demo``: drive a running server the way a client does and print each message.

It creates a session, analyses a ticker, switches ticker mid-run, then keeps analysing until a
revaluation lands during a run and restarts it (start the server with a short
MARKETPULSE_MARKET_INTERVAL to see that quickly).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import httpx
import websockets
from websockets.typing import Subprotocol

from marketpulse.sessions.socket_auth import subprotocols

HOLDINGS = {"AAPL": 100, "GOOGL": 50, "MSFT": 75}


class Printer:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def __call__(self, arrow: str, kind: str, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.2f}s] {arrow} {kind:<19} {text}", flush=True)


def describe(m: dict[str, Any]) -> str:
    t = m.get("type")
    if t == "session":
        s = m["state"]
        h = ", ".join(f"{k} {v:g}" for k, v in s["holdings"].items())
        return f"total_value {s['total_value']:,.2f}  basis {s['basis_version']}  holdings {h}"
    if t == "analysis_result":
        v = m["value"]
        shown = "null" if v is None else f"{v:+.4f}"
        where = f"basis {m['basis_version']}  run {m['run_id'][:8]}"
        return f"{m['ticker']:<6} {m['metric']:<17} {shown:>9}  {where}"
    if t == "portfolio_update":
        return f"total_value {m['total_value']:,.2f}  basis {m['basis_version']}"
    if t in ("analysis_started", "analysis_restarted"):
        extra = f"  reason {m['reason']}" if "reason" in m else ""
        return f"{m['ticker']:<6} run {m['run_id'][:8]}  basis {m['basis_version']}{extra}"
    if t in ("analysis_cancelled", "analysis_failed"):
        return f"{m['ticker']:<6} run {m['run_id'][:8]}  reason {m['reason']}"
    if t == "analysis_complete":
        return f"{m['ticker']:<6} run {m['run_id'][:8]}"
    return json.dumps({k: v for k, v in m.items() if k != "type"})


async def run_demo(base_url: str, restart_wait_s: float = 120.0) -> int:
    say = Printer()
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        try:
            r = await http.post("/api/sessions", json={"holdings": HOLDINGS})
        except httpx.HTTPError as exc:
            print(f"cannot reach {base_url}: {exc}. Start it first: make run", file=sys.stderr)
            return 1
        if r.status_code != 201:
            print(f"creating a session failed: {r.status_code} {r.text}", file=sys.stderr)
            return 1
        sid, token = r.json()["session_id"], r.json()["token"]
        say("->", "POST /api/sessions", f"session {sid} (token kept by the client)")
        ws_url = base_url.replace("http", "ws", 1) + f"/ws/sessions/{sid}"
        # the token travels as a subprotocol, never in the URL (socket_auth.py)
        offered = [Subprotocol(p) for p in subprotocols(token)]
        async with websockets.connect(ws_url, subprotocols=offered) as ws:
            inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

            async def read() -> None:
                async for raw in ws:
                    m = json.loads(raw)
                    say("<-", m["type"], describe(m))
                    inbox.put_nowait(m)

            reader = asyncio.ensure_future(read())

            async def send(msg: dict[str, Any]) -> None:
                say("->", msg["action"], msg.get("ticker", ""))
                await ws.send(json.dumps(msg))

            async def until(pred: Any, within: float) -> dict[str, Any]:
                async with asyncio.timeout(within):
                    while True:
                        m = await inbox.get()
                        if pred(m):
                            return m

            try:
                await until(lambda m: m["type"] == "session", 10)
                await send({"action": "analyze", "ticker": "AAPL"})
                await until(lambda m: m["type"] == "analysis_result", 30)
                print("   ... switching ticker mid-run: the AAPL run is superseded")
                await send({"action": "analyze", "ticker": "MSFT"})
                await until(lambda m: m["type"] in ("analysis_complete", "analysis_failed"), 60)
                print("   ... analysing until a revaluation lands during a run and restarts it")
                tickers = ["GOOGL", "AAPL", "MSFT"]
                deadline = time.monotonic() + restart_wait_s
                i = 0
                while time.monotonic() < deadline:
                    await send({"action": "analyze", "ticker": tickers[i % 3]})
                    i += 1
                    m = await until(
                        lambda m: (
                            m["type"]
                            in ("analysis_restarted", "analysis_complete", "analysis_failed")
                        ),
                        60,
                    )
                    if m["type"] == "analysis_restarted":
                        await until(
                            lambda m: m["type"] in ("analysis_complete", "analysis_failed"), 60
                        )
                        print(
                            "   ... done: every result above carries the basis it was computed on"
                        )
                        return 0
                print(
                    "   ... no revaluation landed during a run; try MARKETPULSE_MARKET_INTERVAL=5"
                )
                return 0
            except TimeoutError:
                print("the server stopped answering", file=sys.stderr)
                return 1
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
