"""The checker test of issue 2: many sessions, concurrent clients switching tickers, metric
completions and revaluations at a high rate; then a checker over every client's message log and
the stored state. It must find zero violations with our store, and it must catch a deliberately
naive GET/SET store run through the same workload (so the checker itself is proven to bite)."""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Sequence
from typing import Any, cast

from marketpulse.infra.redis import keys
from marketpulse.sessions.store import SessionStore
from support.harness import Client, Server, serve, settings_for

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
        await self.redis.redis.publish(
            chan, f"{v}\n" + '{"type":"analysis_result",' + result_json[1:]
        )
        if len(done.split()) >= n:
            await self.redis.redis.hset(key, "run_status", "complete")
            await self.redis.redis.publish(
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


def check_log(log: list[dict[str, Any]], bad: Counter[str]) -> set[str]:
    """Walk one client's log in order; count violations; return the result ids it received."""
    snapshot = log[0]["state"]
    basis = snapshot["basis_version"]
    run_id = (snapshot["current_analysis"] or {}).get("run_id")
    superseded: set[str] = set()
    seen: set[str] = set()
    for m in log[1:]:
        t = m["type"]
        if t == "portfolio_update":
            bad["missed_or_lost_basis_change"] += m["basis_version"] != basis + 1
            basis = m["basis_version"]
        elif t in ("analysis_started", "analysis_restarted"):
            run_id = m["run_id"]
        elif t == "analysis_cancelled":
            superseded.add(m["run_id"])
        elif t == "analysis_result":
            bad["duplicate_result"] += m["id"] in seen
            seen.add(m["id"])
            bad["stale_result"] += m["basis_version"] != basis
            bad["result_not_of_latest_run"] += m["run_id"] != run_id
            bad["result_after_switch"] += m["run_id"] in superseded
    return seen


def check(clients: list[tuple[Client, dict[str, Any]]]) -> Counter[str]:
    """Violations over (client log, final stored state) pairs."""
    bad: Counter[str] = Counter()
    for client, stored in clients:
        seen = check_log(client.log, bad)
        stored_ids = [r["id"] for r in stored["analysis_results"]]
        bad["duplicate_stored"] += len(stored_ids) - len(set(stored_ids))
        in_snapshot = {r["id"] for r in client.log[0]["state"]["analysis_results"]}
        bad["streamed_not_stored"] += len(seen - set(stored_ids))
        bad["stored_not_streamed"] += len(set(stored_ids) - seen - in_snapshot)
    return +bad  # drop zero counts


async def workload(
    server: Server, n_sessions: int, seconds: float, seed: int
) -> list[tuple[Client, dict[str, Any]]]:
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
        from marketpulse.sessions.store import render_state

        stored = render_state(cast(dict[bytes, bytes], raw))
        for c in clients[sid]:
            out.append((c, stored))
    for cs in clients.values():
        for c in cs:
            await c.close()
    return out


async def test_checker_finds_no_violation_under_concurrent_load(redis_url: str) -> None:
    settings = settings_for(redis_url, market_interval=0.2, metric_delay="0.05-0.3")
    async with serve(settings) as server:
        logs = await workload(server, n_sessions=12, seconds=6.0, seed=7)
    results = sum(len([m for m in c.log if m["type"] == "analysis_result"]) for c, _ in logs)
    updates = sum(len([m for m in c.log if m["type"] == "portfolio_update"]) for c, _ in logs)
    restarts = sum(len([m for m in c.log if m["type"] == "analysis_restarted"]) for c, _ in logs)
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
