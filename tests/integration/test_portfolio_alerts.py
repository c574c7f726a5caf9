"""Portfolio alerts on replayed real data (docs/alerts.md, "Portfolio alerts"), on the suite's
Redis: the revaluations are driven by hand (``ValuationLoop.run_once``, one market tick each),
the replayed market is AAPL and IBM from 2008-08-29 (the September-October 2008 fall).

- A drawdown alert fires once per crossing at the threshold and re-arms on recovery (past its
  margin), exactly at the ticks a reference computed here from the replay's closes says; a
  withdrawal of half the portfolio (a holdings edit, total value -50 %) fires nothing.
- A drift alert fires exactly when a hand-computed weight is outside its band, with that
  distance as its value.
- A metric-threshold alert fires from a committed ``analysis_result`` and reaches the
  session's socket as ``portfolio_alert``.
- The shared history and the other sessions' sockets never see a portfolio fire.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from marketpulse.infra.redis import keys
from marketpulse.infra.redis.client import RedisClient
from marketpulse.infra.redis.embedded import free_port
from marketpulse.infra.redis.lease import Lease
from marketpulse.market.providers.replay import ReplaySource
from support.harness import Client, Server, connect_session, serve, settings_for
from support.processes import Proc, start_serve

START = "2008-08-29"  # tick 1 is 2008-09-02, tick 2 the high of 2008-09-03
HOLDINGS = {"AAPL": 10.0, "IBM": 10.0}
REPLAY = ReplaySource(start=START, step=1)


def value(holdings: Mapping[str, float], tick: int) -> float:
    return sum(q * REPLAY.bar(t, tick).close for t, q in holdings.items())


@dataclass
class Reference:
    """A drawdown alert by its definition: a time-weighted index (each tick's return of the
    holdings valued at the tick before), its running peak, a fire when the drawdown reaches
    the threshold while armed, a re-arm below ``threshold - margin``."""

    fires: list[tuple[int, float, int]] = field(default_factory=list)  # (tick, dd %, peak tick)
    rearms: list[int] = field(default_factory=list)


def reference(
    schedule: Mapping[int, Mapping[str, float]],
    t0: int,
    t_end: int,
    threshold: float,
    margin: float,
) -> Reference:
    """``schedule`` maps the first tick valued with each set of holdings to it."""

    def held(t: int) -> Mapping[str, float]:
        return schedule[max(k for k in schedule if k <= t)]

    out = Reference()
    index, peak, peak_tick, armed = 1.0, 1.0, t0, True
    for tick in range(t0 + 1, t_end + 1):
        q = held(tick - 1)
        index *= value(q, tick) / value(q, tick - 1)
        if index >= peak:
            peak, peak_tick = index, tick
        dd = 100 * (1 - index / peak)
        if dd >= threshold and armed:
            out.fires.append((tick, dd, peak_tick))
            armed = False
        elif dd < threshold - margin and not armed:
            out.rearms.append(tick)
            armed = True
    return out


@pytest.fixture
async def server(redis_url: str) -> AsyncIterator[Server]:
    settings = settings_for(redis_url, data_source="replay", replay_start=START, replay_step=1)
    async with serve(settings) as s:
        yield s


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def tick(server: Server) -> int:
    return (await server.state["valuation"].run_once()).tick


async def fires_of(server: Server, sid: str, token: str) -> list[dict[str, Any]]:
    r = await server.http.get(f"/api/sessions/{sid}/alerts/history", headers=auth(token))
    assert r.status_code == 200, r.text
    return list(reversed(r.json()["history"]))  # oldest first


async def add_alert(server: Server, sid: str, token: str, body: dict[str, Any]) -> None:
    r = await server.http.post(f"/api/sessions/{sid}/alerts", json=body, headers=auth(token))
    assert r.status_code == 201, r.text


async def test_drawdown_fires_once_per_crossing_rearms_and_ignores_a_withdrawal(
    server: Server,
) -> None:
    sid, token, _ = await server.create_session(HOLDINGS)
    await add_alert(
        server, sid, token,
        {"id": "dd", "kind": "drawdown_from_peak", "threshold": 12, "rearm_margin": 2},
    )  # fmt: skip
    t0 = await tick(server)  # the first valuation watched: index 1
    schedule: dict[int, Mapping[str, float]] = {t0: HOLDINGS}
    last = t0
    while last < t0 + 18:
        last = await tick(server)
        if last == t0 + 3:  # a withdrawal of half of everything: the value halves
            half = {t: q / 2 for t, q in HOLDINGS.items()}
            r = await server.http.put(
                f"/api/sessions/{sid}/holdings", json={"holdings": half}, headers=auth(token)
            )
            assert r.status_code == 200, r.text
            schedule[last + 1] = half
    ref = reference(schedule, t0, last, threshold=12, margin=2)
    # on this data (the September 2008 fall): fires, a recovery past the margin, fires again
    assert len(ref.fires) >= 2 and ref.fires[0][0] < ref.rearms[0] < ref.fires[1][0]
    fires = await fires_of(server, sid, token)
    assert [f["observation"] for f in fires] == [t for t, _, _ in ref.fires]
    assert [f["value"] for f in fires] == pytest.approx([dd for _, dd, _ in ref.fires], rel=1e-9)
    # the withdrawal: the value halved from t0+3 to t0+4, far past 12 %, and nothing fired
    assert value(schedule[t0 + 4], t0 + 4) < 0.6 * value(HOLDINGS, t0 + 3)
    assert t0 + 4 not in [f["observation"] for f in fires]
    first = fires[0]
    assert first["alert_id"] == "dd" and first["session_id"] == sid
    assert first["alert_type"] == "portfolio" and first["portfolio"]["kind"] == "drawdown_from_peak"
    # which holdings drove it: each one's move since the peak, at the quantities held
    tick1, _, peak_tick = ref.fires[0]
    moves = {
        t: q * (REPLAY.bar(t, tick1).close - REPLAY.bar(t, peak_tick).close)
        for t, q in schedule[max(k for k in schedule if k <= tick1)].items()
    }
    drivers = first["portfolio"]["contributors"]
    assert [d["ticker"] for d in drivers] == sorted(moves, key=lambda t: -abs(moves[t]))
    for d in drivers:
        assert d["amount"] == pytest.approx(moves[d["ticker"]], abs=0.006)
    # the shared history never shows a session's portfolio fire
    shared = (await server.http.get("/api/alerts/history")).json()["history"]
    assert all(row.get("session_id") is None for row in shared)


async def test_drift_alert_matches_a_hand_computed_band_breach(server: Server) -> None:
    holdings = {"AAPL": 10.0, "IBM": 30.0}
    sid, token, _ = await server.create_session(holdings)
    at = (await server.state["valuation"].run_once()).tick + 1  # the next tick, valued below
    a, i = 10 * REPLAY.bar("AAPL", at).close, 30 * REPLAY.bar("IBM", at).close
    w_aapl = 100 * a / (a + i)  # by hand: 10 × 161.22 / (10 × 161.22 + 30 × 115.00) ...
    drift = w_aapl - 50.0
    targets = {"AAPL": 50.0, "IBM": 50.0}
    band_in = abs(drift) - 0.01  # just inside the breach: fires
    band_out = abs(drift) + 0.01  # just wide enough: does not
    await add_alert(server, sid, token, {"id": "tight", "kind": "drift", "targets": targets,
                                         "band": band_in})  # fmt: skip
    await add_alert(server, sid, token, {"id": "wide", "kind": "drift", "targets": targets,
                                         "band": band_out})  # fmt: skip
    assert await tick(server) == at
    fires = await fires_of(server, sid, token)
    assert [f["alert_id"] for f in fires] == ["tight"]
    assert fires[0]["observation"] == at
    assert fires[0]["value"] == pytest.approx(abs(drift), rel=1e-9)
    rows = {r["ticker"]: r for r in fires[0]["portfolio"]["contributors"]}
    assert rows["AAPL"]["weight"] == pytest.approx(w_aapl, abs=1e-4)
    assert rows["IBM"]["drift"] == pytest.approx(-drift, abs=1e-4)
    listing = (await server.http.get(f"/api/sessions/{sid}/alerts", headers=auth(token))).json()
    state = {row["id"]: row["state"] for row in listing["alerts"]}
    assert state["tight"]["armed"] is False and state["wide"]["armed"] is True


async def test_a_metric_alert_fires_from_a_committed_result_to_the_sessions_socket(
    server: Server,
) -> None:
    sid, token, _ = await server.create_session({"AAPL": 10.0, "IBM": 10.0})
    other_sid, other_token, _ = await server.create_session({"AAPL": 1.0})
    # AAPL's concentration is its weight: 10 × 166.96 / (10 × 166.96 + 10 × 118.34) ≈ 0.585
    conc = {"kind": "metric", "ticker": "AAPL", "metric": "concentration", "threshold": 0.25}
    risk = {"kind": "metric", "ticker": "IBM", "metric": "portfolio_risk", "threshold": 0.99}
    await add_alert(server, sid, token, {"id": "conc", **conc})
    await add_alert(server, sid, token, {"id": "risk", **risk})
    mine = await server.connect(sid, token)
    other = await server.connect(other_sid, other_token)
    try:
        await mine.send({"action": "analyze", "ticker": "AAPL"})
        result = await mine.next("analysis_result", metric="concentration")
        assert result["value"] > 0.25
        fire = await mine.next("portfolio_alert", alert_id="conc")
        assert fire["session_id"] == sid and fire["value"] == result["value"]
        assert fire["portfolio"]["contributors"] == [{"ticker": "AAPL", "value": result["value"]}]
        await mine.next("analysis_complete")
        # an analysis of IBM commits IBM's results: portfolio_risk of IBM is < 0.99, no fire
        await mine.send({"action": "analyze", "ticker": "IBM"})
        await mine.next("analysis_complete", within=30)
        fires = await fires_of(server, sid, token)
        assert [f["alert_id"] for f in fires] == ["conc"]
    finally:
        await mine.close()
        await other.close()
    assert other.of("portfolio_alert") == []


async def test_routes_authorise_like_the_session_and_refuse_bad_alerts(server: Server) -> None:
    sid, token, _ = await server.create_session(HOLDINGS)
    url = f"/api/sessions/{sid}/alerts"
    body = {"kind": "total_value", "comparison": "below", "threshold": 1000}
    r = await server.http.post(url, json=body, headers=auth("wrong"))
    assert r.status_code == 404 and r.json()["error"]["code"] == "session_not_found"
    r = await server.http.post(url, json={"kind": "drift", "band": 5}, headers=auth(token))
    assert r.status_code == 422 and "targets" in r.json()["error"]["message"]
    r = await server.http.post(
        url, json={"kind": "metric", "ticker": "MSFT", "metric": "concentration"},
        headers=auth(token),
    )  # fmt: skip
    assert r.status_code == 422 and r.json()["error"]["code"] == "not_in_portfolio"
    r = await server.http.post(url, json={**body, "id": "tv"}, headers=auth(token))
    assert r.status_code == 201
    r = await server.http.delete(f"{url}/tv", headers=auth(token))
    assert r.status_code == 204
    r = await server.http.delete(f"{url}/tv", headers=auth(token))
    assert r.status_code == 404 and r.json()["error"]["code"] == "alert_not_found"


async def test_the_alerts_expire_and_go_with_their_session(server: Server) -> None:
    sid, token, _ = await server.create_session(HOLDINGS)
    await add_alert(server, sid, token, {"id": "tv", "kind": "total_value", "threshold": 1})
    await tick(server)
    redis = server.state["redis"]
    names = [
        keys.portfolio_alerts(sid),
        keys.portfolio_track(sid),
        keys.portfolio_alert_state(sid, "tv"),
    ]
    session_ttl = await redis.call("PTTL", keys.session(sid))
    for name in names:  # the session's TTL, set from it at the last write
        ttl = await redis.call("PTTL", name)
        assert 0 < ttl <= session_ttl, name
    r = await server.http.delete(f"/api/sessions/{sid}", headers=auth(token))
    assert r.status_code == 204
    assert await redis.call("EXISTS", *names) == 0


async def test_the_peak_survives_a_sigkill_and_restart_of_the_service(
    redis_url: str, redis_boundary: RedisClient, tmp_path: Path, procs: list[Proc]
) -> None:
    """``marketpulse serve`` on the suite's Redis, revaluing every 0.3 s. The test holds the
    valuation lease while it creates the session and the alert, so the first tick watched is
    known; it SIGKILLs the service with the peak behind it (2008-09-03) and the threshold not
    yet reached, restarts it, and the alert fires at the tick the reference says: measured
    from the peak the first process recorded."""
    port = free_port()
    env = {
        "MARKETPULSE_REDIS_URL": redis_url,
        "MARKETPULSE_DATA_SOURCE": "replay",
        "MARKETPULSE_REPLAY_START": START,
        "MARKETPULSE_REPLAY_STEP": "1",
        "MARKETPULSE_MARKET_INTERVAL": "0.3",
        "MARKETPULSE_WATCHLIST": "none",
        "MARKETPULSE_LOG_LEVEL": "INFO",
    }
    base = f"http://127.0.0.1:{port}"
    lease = Lease(redis_boundary, keys.VALUATION_LEASE, ttl_s=120)
    assert await lease.acquire()  # no revaluation until the alert exists
    first = await start_serve(env, port, tmp_path / "service.log")
    procs.append(first)
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        r = await http.post("/api/sessions", json={"holdings": HOLDINGS})
        assert r.status_code == 201, r.text
        sid, token = r.json()["session_id"], r.json()["token"]
        alert = {"id": "dd", "kind": "drawdown_from_peak", "threshold": 35, "rearm_margin": 10}
        r = await http.post(f"/api/sessions/{sid}/alerts", json=alert, headers=auth(token))
        assert r.status_code == 201, r.text
        t0 = int(await redis_boundary.call("GET", keys.MARKET_TICK) or 0) + 1
        client = Client(await connect_session(base.replace("http", "ws"), sid, token))
        client.start()
        await client.next("session")
        await lease.release()
        track: dict[str, Any] | None = None
        while track is None or track["tick"] < t0 + 12:  # each revaluation is an event
            await client.next("portfolio_update", within=30)
            r = await http.get(f"/api/sessions/{sid}/alerts", headers=auth(token))
            track = r.json()["track"]
        await first.kill(signal.SIGKILL)
        await client.close()
        before = reference({t0: HOLDINGS}, t0, track["tick"], threshold=35, margin=10)
        assert before.fires == []  # killed before the threshold
        peak = max(value(HOLDINGS, t) for t in range(t0, track["tick"] + 1)) / value(HOLDINGS, t0)
        assert track["peak"] == pytest.approx(peak, rel=1e-12) and track["peak"] > 1.0

        second = await start_serve(env, port, tmp_path / "service.log")
        procs.append(second)
        await second.wait_for_line(f"portfolio alert dd of session {sid} fired", 60)
        r = await http.get(f"/api/sessions/{sid}/alerts/history", headers=auth(token))
        [fire] = r.json()["history"]
        after = reference({t0: HOLDINGS}, t0, fire["observation"], threshold=35, margin=10)
        [(fired_at, dd, _)] = after.fires  # one fire, at the tick the reference says
        assert fire["observation"] == fired_at
        assert fire["value"] == pytest.approx(dd, rel=1e-9)
        r = await http.get(f"/api/sessions/{sid}/alerts", headers=auth(token))
        assert r.json()["track"]["peak"] == track["peak"]  # the same peak, read back exactly
