"""The checker test of issue 2: many sessions, concurrent clients switching tickers, metric
completions and revaluations at a high rate; then a checker over every client's message log and
the stored state. It must find zero violations with our store, and it must catch a deliberately
naive GET/SET store run through the same workload (so the checker itself is proven to bite).

Issue 11 runs the same load through faults: the service talks to Redis through a loopback proxy
(tests/support/tcp_proxy.py) that delays replies, drops them for longer than redis-py's socket
timeout and cuts every connection; the clients reconnect when the service closes their socket.
The checker (``check``) must still find nothing: no result stored twice, no message twice on a
client, none lost, no run left running."""

from __future__ import annotations

import asyncio
import json
import random
import signal
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

import httpx
from redis.asyncio import Redis

from marketpulse.infra.redis import keys, partitions
from marketpulse.infra.redis.embedded import free_port
from marketpulse.sessions.store import SessionStore, render_state
from support.harness import Client, Follower, Server, serve, settings_for
from support.processes import Proc, start_serve
from support.tcp_proxy import TcpProxy

TICKERS = ["AAPL", "GOOGL", "MSFT", "IBM"]
HOLDINGS = {"AAPL": 100, "GOOGL": 50, "MSFT": 75, "IBM": 20}


class NaiveStore(SessionStore):
    """A read-modify-write append over round trips (what guarantee 1 forbids). The 5 ms pause
    stands for the network round trip of a remote client between its GET and its SET."""

    async def append_result(
        self, session_id: str, run_id: str, basis: int, result_id: str, result_json: str, n: int
    ) -> str:
        key, chan = self.keys_for(session_id)
        f = cast(
            list[bytes | None],
            await self.redis.redis.hmget(
                key, "run_id", "run_status", "basis_version", "run_done", "rseq", "run_ticker"
            ),
        )
        if f[2] is None:
            return "gone"
        if (f[0] or b"").decode() != run_id or f[1] != b"running":
            return "superseded"
        if int(f[2]) != basis:
            return "stale"
        await asyncio.sleep(0.005)  # wait-ok: models the round trip, not a wait for an event
        done = (f[3] or b"").decode() + f" {result_id} "
        seq = int(f[4] or 0) + 1
        await self.redis.redis.hset(
            key, mapping={f"r:{seq}": result_json, "rseq": seq, "run_done": done}
        )
        v = await self.redis.redis.hincrby(key, "version", 1)
        await self.redis.redis.spublish(
            chan, f"{v}\n" + '{"type":"analysis_result",' + result_json[1:]
        )
        if len(done.split()) >= n:
            await self.redis.redis.hset(key, "run_status", "complete")
            await self.redis.redis.spublish(
                chan,
                f"{v}\n"
                + json.dumps(
                    {
                        "type": "analysis_complete",
                        "ticker": (f[5] or b"").decode(),
                        "run_id": run_id,
                    }
                ),
            )
            return "complete"
        return "ok"

    async def append_results(
        self, session_id: str, run_id: str, basis: int, results: Sequence[tuple[str, str]], n: int
    ) -> list[str]:
        return [
            await self.append_result(session_id, run_id, basis, rid, body, n)
            for rid, body in results
        ]


ENDS_ONCE = ("analysis_restarted", "analysis_complete", "analysis_cancelled", "analysis_failed")


def check_log(
    log: list[dict[str, Any]], bad: Counter[str]
) -> tuple[set[str], set[tuple[str, str]]]:
    """Walk one connection's log in order (its snapshot first); count violations; return the
    result ids and the (type, run_id) of the once-only run events it received live."""
    snapshot = log[0]["state"]
    basis = snapshot["basis_version"]
    run_id = (snapshot["current_analysis"] or {}).get("run_id")
    in_snapshot = {r["id"] for r in snapshot["analysis_results"]}
    superseded: set[str] = set()
    seen: set[str] = set()
    events: set[tuple[str, str]] = set()
    for m in log[1:]:
        t = m["type"]
        if t == "portfolio_update":
            bad["missed_or_lost_basis_change"] += m["basis_version"] != basis + 1
            basis = m["basis_version"]
        elif t in ("analysis_started", "analysis_restarted"):
            run_id = m["run_id"]
        if t == "analysis_cancelled":
            superseded.add(m["run_id"])
        if t in ENDS_ONCE:
            bad["duplicate_event"] += (t, m["run_id"]) in events
            events.add((t, m["run_id"]))
        elif t == "analysis_result":
            bad["duplicate_result"] += m["id"] in seen or m["id"] in in_snapshot
            seen.add(m["id"])
            bad["stale_result"] += m["basis_version"] != basis
            bad["result_not_of_latest_run"] += m["run_id"] != run_id
            bad["result_after_switch"] += m["run_id"] in superseded
    return seen, events


def check(clients: Sequence[tuple[Sequence[Client], dict[str, Any]]]) -> Counter[str]:
    """Violations over (one client's connections in order, the final stored state) pairs.

    A client may have several connections (it reconnects when the service closes its socket);
    each begins with a snapshot. Each connection is checked on its own (commit order, basis,
    run), and, over the client's connections together:

    - duplicate: a result or a once-only run event (restarted, complete, cancelled, failed of
      one run) received live twice, on one connection or on two, or live on a connection whose
      snapshot already held it; a result id stored twice;
    - lost: a stored result missing from what the client's last connection knows (its snapshot
      plus the events after it; the last connection is read after a fence, so the client has
      every event committed before the state was read: whatever is stored, it must have);
    - phantom: a result the client received live that is not stored (``streamed_not_stored``);
    - a run still ``running`` in the stored state once the clients have stopped.
    """
    bad: Counter[str] = Counter()
    for conns, stored in clients:
        live: list[str] = []
        events: list[tuple[str, str]] = []
        for c in conns:
            seen, ended = check_log(c.log, bad)
            live.extend(seen)
            events.extend(ended)
        bad["duplicate_result"] += len(live) - len(set(live))  # on two connections
        bad["duplicate_event"] += len(events) - len(set(events))
        stored_ids = [r["id"] for r in stored["analysis_results"]]
        bad["duplicate_stored"] += len(stored_ids) - len(set(stored_ids))
        bad["streamed_not_stored"] += len(set(live) - set(stored_ids))
        last = conns[-1].log
        knows = {r["id"] for r in last[0]["state"]["analysis_results"]}
        knows |= {m["id"] for m in last[1:] if m["type"] == "analysis_result"}
        bad["stored_not_streamed"] += len(set(stored_ids) - knows)
        bad["run_left_running"] += (stored["current_analysis"] or {}).get("status") == "running"
    return +bad  # drop zero counts


async def workload(
    server: Server, n_sessions: int, seconds: float, seed: int
) -> list[tuple[list[Client], dict[str, Any]]]:
    rng = random.Random(seed)
    sessions = [await server.create_session(HOLDINGS) for _ in range(n_sessions)]
    clients = {
        sid: [await server.connect(sid, tok), await server.connect(sid, tok)]
        for sid, tok, _ in sessions
    }
    deadline = asyncio.get_running_loop().time() + seconds

    async def drive(sid: str, token: str) -> None:
        c1, c2 = clients[sid]
        while asyncio.get_running_loop().time() < deadline:
            who = rng.choice((c1, c2))
            await who.send({"action": "analyze", "ticker": rng.choice(TICKERS)})
            roll = rng.random()
            if roll < 0.1:
                h = {t: rng.randint(1, 200) for t in TICKERS}
                r = await server.http.put(
                    f"/api/sessions/{sid}/holdings",
                    json={"holdings": h},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert r.status_code == 200
            elif roll < 0.15:
                await who.send({"action": "cancel"})
            await asyncio.sleep(rng.uniform(0.05, 0.5))  # wait-ok: think time of a client

    await asyncio.gather(*(drive(sid, tok) for sid, tok, _ in sessions))
    # Quiesce: the valuation loop sweeps once more and then waits an hour; every run ends.
    valuation = server.state["valuation"]
    valuation.interval_s = 3600.0
    async with asyncio.timeout(10):
        await valuation.ticked.wait()
    runs = list(server.state["engine"].runs.values())
    async with asyncio.timeout(30):
        await asyncio.gather(*runs, return_exceptions=True)
    # ... and the runs those queued meanwhile (a restart is a new run on the stream)
    await _none_running(server.state["redis"].redis, [sid for sid, _, _ in sessions], 30)
    # Fence: one last committed change per session; when both clients have its event, they
    # have every event committed before it (commit order).
    out = []
    for sid, tok, _ in sessions:
        auth = {"Authorization": f"Bearer {tok}"}
        r = await server.http.put(
            f"/api/sessions/{sid}/holdings", json={"holdings": HOLDINGS}, headers=auth
        )
        basis = r.json()["basis_version"]
        for c in clients[sid]:
            await c.next("portfolio_update", within=20, basis_version=basis)
        raw = await server.state["redis"].redis.hgetall(keys.session(sid))
        stored = render_state(cast(dict[bytes, bytes], raw))
        for c in clients[sid]:
            out.append(([c], stored))
    for cs in clients.values():
        for c in cs:
            await c.close()
    return out


async def test_checker_finds_no_violation_under_concurrent_load(redis_url: str) -> None:
    settings = settings_for(redis_url, market_interval=0.2, metric_delay="0.05-0.3")
    async with serve(settings) as server:
        logs = await workload(server, n_sessions=12, seconds=6.0, seed=7)
    results = sum(len(c.of("analysis_result")) for cs, _ in logs for c in cs)
    updates = sum(len(c.of("portfolio_update")) for cs, _ in logs for c in cs)
    restarts = sum(len(c.of("analysis_restarted")) for cs, _ in logs for c in cs)
    assert results > 200 and updates > 200 and restarts > 0, (results, updates, restarts)
    print(f"checked {results} results, {updates} portfolio updates, {restarts} restarts")
    assert check(logs) == Counter()


async def test_checker_catches_a_naive_get_set_store(redis_url: str) -> None:
    settings = settings_for(redis_url, market_interval=0.05, metric_delay="0.01-0.05")
    async with serve(settings) as server:
        state = server.state
        state["engine"].store = NaiveStore(state["redis"], ttl_s=3600)
        logs = await workload(server, n_sessions=8, seconds=4.0, seed=11)
    violations = check(logs)
    print("naive store violations:", dict(violations))
    assert violations, "the checker must see what a naive store breaks"
    assert (
        violations["stale_result"]
        + violations["streamed_not_stored"]
        + violations["result_not_of_latest_run"]
        > 0
    )


# -- issue 11: the same load through a faulty network ------------------------------------------

DROP_S = 6.0  # longer than redis-py's socket timeout (5 s): its commands time out and retry
SETTLE_S = 60.0  # after the faults, every run ends and every client catches up within this


async def _faults(proxy: TcpProxy) -> None:
    """One round of each fault, each lasting a moment of the load (the sleeps are how long a
    fault lasts, not waits for state)."""
    proxy.delay(0.3)  # slow replies: everything still answers
    await asyncio.sleep(1.5)  # wait-ok: the fault's duration
    proxy.restore()
    proxy.cut()  # every connection reset: mux, pool and pub/sub reconnect
    await asyncio.sleep(1.0)  # wait-ok: load between faults
    proxy.drop_replies()  # commands run on Redis, their replies never come back
    await asyncio.sleep(DROP_S)  # wait-ok: the fault's duration
    proxy.restore()  # the connections that lost replies are reset
    await asyncio.sleep(1.0)  # wait-ok: load between faults
    proxy.cut(refuse_s=0.5)  # reset, and refused for a moment
    await asyncio.sleep(1.5)  # wait-ok: load between faults
    proxy.delay(1.5)  # slower than a metric: appends and events arrive late and bunched
    await asyncio.sleep(1.0)  # wait-ok: the fault's duration
    proxy.cut()  # with replies held: those are lost, as with a drop
    proxy.restore()


async def _drive(
    http: Callable[[], httpx.AsyncClient],
    sid: str,
    token: str,
    followers: list[Follower],
    rng: random.Random,
    until: asyncio.Future[None],
) -> None:
    """A session's clients switching tickers, cancelling and changing holdings (over HTTP to
    ``http()``) until ``until``; an answer 503, or none (an instance killed), is a fault's: the
    outcome is unknown, the client goes on."""
    while not until.done():
        who = rng.choice(followers)
        await who.send({"action": "analyze", "ticker": rng.choice(TICKERS)})
        roll = rng.random()
        if roll < 0.1:
            h = {t: rng.randint(1, 200) for t in TICKERS}
            try:
                r = await http().put(
                    f"/api/sessions/{sid}/holdings",
                    json={"holdings": h},
                    headers={"Authorization": f"Bearer {token}"},
                )
            except httpx.TransportError:
                continue
            assert r.status_code in (200, 503), r.text
        elif roll < 0.15:
            await who.send({"action": "cancel"})
        await asyncio.wait({until}, timeout=rng.uniform(0.05, 0.5))  # wait-ok: think time


async def _none_running(redis: Redis, sids: Sequence[str], within: float) -> None:
    """Until no session's run is ``running`` (probed directly on Redis, under a deadline)."""
    async with asyncio.timeout(within):
        while True:
            statuses = [await redis.hget(keys.session(sid), "run_status") for sid in sids]
            if b"running" not in statuses:
                return
            await asyncio.sleep(0.05)  # wait-ok: the probe's period


async def _fenced_states(
    http: httpx.AsyncClient, redis: Redis, sessions: Sequence[tuple[str, str]],
    followers: dict[str, list[Follower]],
) -> list[tuple[list[Client], dict[str, Any]]]:  # fmt: skip
    """One last committed change per session; once every client of it has seen that change,
    it has every event committed before (commit order): then the stored state is compared."""
    out: list[tuple[list[Client], dict[str, Any]]] = []
    for sid, tok in sessions:
        auth = {"Authorization": f"Bearer {tok}"}
        r = await http.put(
            f"/api/sessions/{sid}/holdings", json={"holdings": HOLDINGS}, headers=auth
        )
        assert r.status_code == 200, r.text
        basis = r.json()["basis_version"]
        for f in followers[sid]:
            await f.until_basis(basis, within=SETTLE_S)
        stored = render_state(cast(dict[bytes, bytes], await redis.hgetall(keys.session(sid))))
        out.extend((f.connections, stored) for f in followers[sid])
    return out


async def test_checker_finds_no_violation_through_delays_drops_and_cuts(
    redis_proxy: TcpProxy, redis_client: Redis
) -> None:
    """Dropped replies make the mux and redis-py run a script a second time (an append, a
    start, a cancel, a holdings change); a cut or a drop on the pub/sub connection loses the
    events published meanwhile, so the service closes every socket with 1012 and each client
    reconnects to a snapshot. Lost, precisely: a result in a session's stored state that the
    client's last connection (its snapshot plus the events after it) does not have once the
    client has seen a fence committed after every run ended; a client has seen a result twice
    if it came live twice (one connection or two) or live after its connection's snapshot held
    it. Zero of each, zero results stored twice, and no run left running."""
    settings = settings_for(
        redis_proxy.url(), market_interval=0.3, metric_delay="0.05-0.3", run_reclaim_s=2.0
    )
    rng = random.Random(13)
    async with serve(settings) as server:
        sessions = [(sid, tok) for sid, tok, _ in
                    [await server.create_session(HOLDINGS) for _ in range(6)]]  # fmt: skip
        followers = {
            sid: [Follower([server.ws_base], sid, tok) for _ in range(2)] for sid, tok in sessions
        }
        for fs in followers.values():
            for f in fs:
                await f.connect()
        faults = asyncio.ensure_future(_faults(redis_proxy))
        try:
            drives = [
                _drive(lambda: server.http, sid, tok, followers[sid], rng, faults)
                for sid, tok in sessions
            ]
            await asyncio.gather(*drives)
            await faults  # raises what the fault schedule raised
            # then: the valuation loop sweeps once more and waits an hour; every run ends
            valuation = server.state["valuation"]
            valuation.interval_s = 3600.0
            async with asyncio.timeout(SETTLE_S):
                await valuation.ticked.wait()
            await _none_running(redis_client, [sid for sid, _ in sessions], SETTLE_S)
            logs = await _fenced_states(server.http, redis_client, sessions, followers)
        finally:
            faults.cancel()
            for fs in followers.values():
                for f in fs:
                    await f.close()
    every = [c for cs, _ in logs for c in cs]
    results = sum(len(c.of("analysis_result")) for c in every)
    closes = Counter(code for fs in followers.values() for f in fs for code in f.closes)
    s = redis_proxy.stats
    print(
        f"checked {results} results live over {len(every)} connections of "
        f"{len(logs)} clients; socket closes {dict(closes)}, handshakes refused "
        f"{sum(f.refused for fs in followers.values() for f in fs)}; proxy: {s}"
    )
    assert s.cut > 0 and s.reset_after_drop > 0 and s.bytes_dropped > 0 and s.refused > 0
    assert closes[1012] > 0 and results > 50, (closes, results)
    assert check(logs) == Counter()


# -- issue 11: three instances on one Redis, one SIGKILLed mid-run -----------------------------


async def _runs_held(redis: Redis, proc: Proc) -> dict[str, str]:
    """The runs a process's worker holds (pending for its consumer): session id -> run id."""
    held = {}
    for partition in partitions.ALL:
        stream = keys.run_stream(partition)
        pending: Any = await redis.xpending_range(stream, keys.RUN_GROUP, "-", "+", 1000)
        for p in pending:
            if f":{proc.pid}:" in p["consumer"].decode():
                found: Any = await redis.xrange(stream, p["message_id"], p["message_id"])
                for _, fields in found:
                    held[fields[b"s"].decode()] = fields[b"r"].decode()
    return held


async def _one_holding_a_run(redis: Redis, procs: Sequence[Proc]) -> tuple[int, dict[str, str]]:
    """Under load: the first process found running an analysis, and the runs it holds."""
    async with asyncio.timeout(SETTLE_S):
        while True:
            for i, proc in enumerate(procs):
                if held := await _runs_held(redis, proc):
                    return i, held
            await asyncio.sleep(0.05)  # wait-ok: the probe's period


async def _runs_spread(redis: Redis, procs: Sequence[Proc]) -> None:
    """Under load: wait until at least two processes hold runs at once."""
    async with asyncio.timeout(SETTLE_S):
        while True:
            if sum([bool(await _runs_held(redis, proc)) for proc in procs]) >= 2:
                return
            await asyncio.sleep(0.05)  # wait-ok: the probe's period


async def test_checker_finds_no_violation_with_three_instances_one_killed(
    redis_url: str, redis_client: Redis, tmp_path: Path
) -> None:
    """Three ``marketpulse serve`` processes on one Redis, each session's two clients on two
    different instances, the checker's load on all of them; mid-run the instance running an
    analysis is SIGKILLed. The clients of the runs it held stop sending (so no later
    ``analyze`` supersedes those runs: a survivor's worker must reclaim and finish them within
    ``MARKETPULSE_RUN_RECLAIM_S``), the others go on against the survivors; the clients it
    served reconnect to a survivor. Then the checker finds nothing (as ``check`` defines it)
    and no run is left ``running``."""
    env = {
        "MARKETPULSE_REDIS_URL": redis_url,
        "MARKETPULSE_METRIC_DELAY": "0.2-0.8",
        "MARKETPULSE_MARKET_INTERVAL": "1",
        "MARKETPULSE_RUN_RECLAIM_S": "1",
        "MARKETPULSE_LOG_LEVEL": "INFO",
    }
    ports = [free_port() for _ in range(3)]
    procs: list[Proc] = []
    https: list[httpx.AsyncClient] = []
    followers: dict[str, list[Follower]] = {}
    rng = random.Random(17)
    try:
        for port in ports:
            procs.append(await start_serve(env, port, tmp_path / "instances.log"))
            https.append(httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10))
        alive = [0, 1, 2]
        sessions = []
        for i in range(6):
            r = await https[i % 3].post("/api/sessions", json={"holdings": HOLDINGS})
            assert r.status_code == 201, r.text
            sessions.append((r.json()["session_id"], r.json()["token"]))
        bases = [f"ws://127.0.0.1:{port}" for port in ports]
        for i, (sid, tok) in enumerate(sessions):  # the two clients on two instances
            followers[sid] = [
                Follower(bases[k:] + bases[:k], sid, tok) for k in (i % 3, (i + 1) % 3)
            ]
            for f in followers[sid]:
                await f.connect()
        loop = asyncio.get_running_loop()
        stop: dict[str, asyncio.Future[None]] = {sid: loop.create_future() for sid, _ in sessions}
        drives = asyncio.gather(
            *(
                _drive(lambda: https[rng.choice(alive)], sid, tok, followers[sid], rng, stop[sid])
                for sid, tok in sessions
            )
        )
        try:
            # each partition's first run goes to the instance that blocked on its stream
            # first, so at the very start one instance may hold every session's run (and
            # killing it would orphan them all): the fault waits until two instances hold runs
            await _runs_spread(redis_client, procs)
            victim, orphans = await _one_holding_a_run(redis_client, procs)
            alive.remove(victim)
            await procs[victim].kill(signal.SIGKILL)
            for sid in orphans:
                stop[sid].cancel()
            await asyncio.sleep(3.0)  # wait-ok: the load goes on against the survivors
        finally:
            for until in stop.values():
                until.cancel()
            await drives
        await _none_running(redis_client, [sid for sid, _ in sessions], SETTLE_S)
        logs = await _fenced_states(https[alive[0]], redis_client, sessions, followers)
    finally:
        for fs in followers.values():
            for f in fs:
                await f.close()
        for h in https:
            await h.aclose()
        for p in procs:
            await p.kill(signal.SIGKILL)
    every = [c for cs, _ in logs for c in cs]
    results = sum(len(c.of("analysis_result")) for c in every)
    closes = Counter(code for fs in followers.values() for f in fs for code in f.closes)
    final = {stored["session_id"]: stored["current_analysis"] for _, stored in logs}
    ended = Counter(  # the runs the victim held: finished as they were, or restarted and then
        ("same run " if final[sid]["run_id"] == rid else "restarted, ") + final[sid]["status"]
        for sid, rid in orphans.items()
    )
    failed = Counter(m["reason"] for c in every for m in c.of("analysis_failed"))
    print(
        f"instance {victim} killed holding {len(orphans)} runs, which ended {dict(ended)} "
        f"(failures of all runs: {dict(failed)}); "
        f"checked {results} results live over {len(every)} connections of {len(logs)} clients; "
        f"socket closes {dict(closes)}"
    )
    assert results > 50 and closes[1006] > 0, (results, closes)
    assert check(logs) == Counter()
