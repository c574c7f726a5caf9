"""The session state in Redis: one hash per session, every mutation one Lua script.

Guarantees 1-8 of docs/contracts.md: each method is one atomic step on the server; the event of
a change is published inside that step; client actions refresh the TTL, revaluations and appends
never do and never recreate a missing key; a wrong token is indistinguishable from a missing
session. Writes are idempotent so a retry after a lost reply is safe; a Redis error surfaces as
RedisUnavailable (an unknown outcome, not a failure). The hash layout is known here only: the
valuation sweep revalues through ``revalue_many`` and never names a field.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast

from marketpulse.errors import NotInPortfolio, RedisUnavailable, SessionExists, SessionNotFound
from marketpulse.infra.redis import keys, partitions
from marketpulse.infra.redis.client import Command, RedisClient
from marketpulse.infra.redis.scripts import Lua, ScriptFolder
from marketpulse.sessions.portfolio import Valuation, canonical_holdings

Arg = str | int | float

_INT_FIELDS = ("version", "basis_version")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class RunSnapshot:
    """What a run reads, atomically, when it starts or restarts: the basis it is pinned to."""

    run_id: str
    basis_version: int
    holdings: dict[str, float]
    prices: dict[str, float]
    tick: int
    superseded_run_id: str | None = None
    fx: dict[str, float] = field(default_factory=dict)  # currency -> rate into the base
    currencies: dict[str, str] = field(default_factory=dict)  # ticker -> its price's currency
    base_currency: str = "USD"
    already_running: bool = False
    taken_over: bool = False  # the run it answers for had lost its worker (a fresh run replaced it)


@dataclass(frozen=True, slots=True)
class ResumedRun:
    """A run a worker took from the stream, read atomically: still current and running."""

    snapshot: RunSnapshot
    redis_now_ms: int  # Redis's clock when it was read (the entry id is Redis's enqueue time)
    deliveries: int  # times its stream entry has been delivered to a worker (1: the first)


MoneyKey = tuple[frozenset[str], str, tuple[tuple[str, str], ...]]
"""A session's tickers, base currency and each ticker's currency."""


@dataclass(frozen=True, slots=True)
class HoldingsAt:
    """A session's holdings, their currencies and base currency, and their version (``hv``,
    which a base-currency change bumps too): a revaluation is computed for one."""

    version: bytes
    holdings: dict[str, float]
    currencies: dict[str, str] = field(default_factory=dict)
    base_currency: str = "USD"
    # (tickers, base, each ticker's currency): sessions alike in these share a valuation's
    # prices, rates and flags at a tick (the sweep computes them once per key)
    money_key: MoneyKey = field(init=False, compare=False)

    def __post_init__(self) -> None:
        cur = tuple(sorted((t, self.currency(t)) for t in self.holdings))
        object.__setattr__(self, "money_key", (frozenset(self.holdings), self.base_currency, cur))

    def currency(self, ticker: str) -> str:
        """The holding's currency (a session stored before currencies were: the base)."""
        return self.currencies.get(ticker, self.base_currency)

    def at_version(self, version: bytes) -> HoldingsAt:
        """The same holdings at another version, sharing this one's maps (never mutated): the
        sweep reads many sessions holding the same, and parses each text once."""
        twin = object.__new__(HoldingsAt)
        object.__setattr__(twin, "version", version)
        for name in ("holdings", "currencies", "base_currency", "money_key"):
            object.__setattr__(twin, name, getattr(self, name))
        return twin


@dataclass(frozen=True, slots=True)
class Revaluation:
    """One session valued at a tick, for the holdings of ``version``. ``total`` None keeps the
    last good valuation and only sets ``flags_text`` (a rate was unavailable)."""

    session_id: str
    version: bytes
    total: float | None
    prices_text: str
    fx_text: str = "{}"
    flags_text: str = "[]"


Basis = tuple[str, str, str]
"""The prices, fx and flags texts of a revaluation: sessions valued alike share one (the same
tuple), sent once per script call."""

RevalueItem = tuple[str, bytes, float | None, Basis]
"""A revaluation as the sweep sends it: session id, holdings version, total (None keeps the last
good valuation) and its basis."""

RevalueOutcome = Literal["updated", "unchanged", "gone"] | HoldingsAt | RedisUnavailable
"""Of one revaluation: stored and published; already so (or a newer tick is stored); the session
is gone; its holdings moved on (value it again for these); an error reply from Redis."""


SCRIPTS = ScriptFolder(
    "marketpulse.sessions", prelude="_session_prelude", prelude_for=("session_", "analysis_")
)
_SESSION_CREATE = SCRIPTS.load("session_create")
_SESSION_READ = SCRIPTS.load("session_read")
_SESSION_TOUCH = SCRIPTS.load("session_touch")
_SESSION_DELETE = SCRIPTS.load("session_delete")
_SESSION_HOLDINGS = SCRIPTS.load("session_holdings")
_ANALYSIS_START = SCRIPTS.load("analysis_start")
_ANALYSIS_APPEND = SCRIPTS.load("analysis_append")
_ANALYSIS_RESTART = SCRIPTS.load("analysis_restart")
_ANALYSIS_CANCEL = SCRIPTS.load("analysis_cancel")
_ANALYSIS_FAIL = SCRIPTS.load("analysis_fail")
_ANALYSIS_RESUME = SCRIPTS.load("analysis_resume")
_ANALYSIS_HANDBACK = SCRIPTS.load("analysis_handback")
_REVALUE_MANY = SCRIPTS.load("session_revalue_many")
# Sessions per session_revalue_many call: enough that a call's own cost (a round of parsing,
# the script's set-up) is small against its sessions' (~8 µs each of Redis's CPU), few enough
# that one call blocks Redis under a millisecond (another client's command waits for it).
BATCH = 100
_NO_HV = b""  # never a stored hv: the session answers with its holdings
_READ: Basis = ("{}", "{}", "[]")  # the basis sent with _NO_HV (never used)


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def render_state(raw: Mapping[bytes, bytes]) -> dict[str, Any]:
    """The public state object (docs/contracts.md) from the stored hash; never the token."""
    f = {_s(k): _s(v) for k, v in raw.items()}
    results = sorted(
        ((int(k[2:]), v) for k, v in f.items() if k.startswith("r:")), key=lambda kv: kv[0]
    )
    cur = f.get("current_analysis")
    base = f.get("base_currency") or "USD"
    return {
        "session_id": f["session_id"],
        "holdings": json.loads(f["holdings"]),
        "total_value": float(f["total_value"]),
        "current_analysis": json.loads(cur) if cur else None,
        "analysis_results": [json.loads(v) for _, v in results],
        "last_activity": f["last_activity"],
        "version": int(f["version"]),
        "basis_version": int(f["basis_version"]),
        "prices": json.loads(f["prices"]),
        "valued_at": f["valued_at"],
        "base_currency": base,
        "currencies": json.loads(f.get("currencies") or "{}"),
        "fx": json.loads(f.get("fx") or "{}") or {base: 1.0},
        "flags": json.loads(f.get("flags") or "[]"),
    }


class SessionStore:
    """Sessions in Redis. Times are passed in (ISO-8601 UTC text), never read here.

    The scripts go through the boundary's mux (one pipelined connection, which raises
    RedisUnavailable itself): they are the hot path of every analysis. Plain commands and the
    revaluation sweep's bulk path (``pipeline_packed``) use the boundary's pooled client.
    """

    def __init__(
        self,
        redis: RedisClient,
        *,
        ttl_s: int,
        results_cap: int = 500,
        run_reclaim_s: float = 10.0,
        run_stream_maxlen: int = 100_000,
    ) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self.results_cap = results_cap
        self.run_reclaim_ms = int(run_reclaim_s * 1000)  # a run idle this long has no worker
        self.run_stream_maxlen = run_stream_maxlen
        self._prune = redis.script(SCRIPTS, "index_prune")

    async def _script(
        self, lua: Lua, session_id: str, args: list[Arg], *, run_stream: bool = False
    ) -> Any:
        """``lua`` on the session's keys (and the run stream as KEYS[3] when it queues or
        acknowledges runs)."""
        session_keys = self.keys_for(session_id)
        if run_stream:
            session_keys.append(keys.run_stream(keys.session_partition(session_id)))
        return await self.redis.mux.evalsha(lua.sha, lua.source, session_keys, args)

    @staticmethod
    def keys_for(session_id: str) -> list[str]:
        """The session's hash and event channel: one hash tag, its partition's."""
        return [keys.session(session_id), keys.session_events(session_id)]

    async def create(
        self,
        session_id: str,
        token_hash: str,
        holdings: Mapping[str, float],
        val: Valuation,
        now: str,
    ) -> None:
        """Atomic; raises SessionExists. Indexes the session for the valuation sweep first (its
        creation time as the score), so a crash between the two steps leaves at most a ghost
        index entry, which the sweep prunes once it is older than its grace (index_prune.lua)."""
        born_ms = int(datetime.fromisoformat(now).timestamp() * 1000)
        index = keys.session_index(keys.session_partition(session_id))
        await self.redis.call("ZADD", index, "NX", born_ms, session_id)
        args: list[Arg] = [session_id, token_hash, canonical_holdings(holdings), val.total_text]
        args += [val.prices_text, now, val.tick, self.ttl_s, *_money(val)]
        res = await self._script(_SESSION_CREATE, session_id, args)
        if _s(res) == "exists":
            raise SessionExists(f"session {session_id!r} already exists")

    async def read(self, session_id: str, token_hash: str, now: str) -> dict[str, Any]:
        """The state object; a client action (refreshes TTL). Raises SessionNotFound."""
        args: list[Arg] = [token_hash, now, self.ttl_s]
        res = await self._script(_SESSION_READ, session_id, args)
        if not isinstance(res, list):
            raise SessionNotFound()
        it = iter(res)
        return render_state(dict(zip(it, it, strict=True)))

    async def touch(self, session_id: str, token_hash: str, now: str) -> int:
        args: list[Arg] = [token_hash, now, self.ttl_s]
        res = await self._script(_SESSION_TOUCH, session_id, args)
        if not isinstance(res, int):
            raise SessionNotFound()
        return res

    async def verify(self, session_id: str, token_hash: str) -> bool:
        """True if the token opens this session (read-only; constant-time compare)."""
        stored = await self.redis.call("HGET", keys.session(session_id), "token")
        return stored is not None and hmac.compare_digest(_s(stored), token_hash)

    async def delete(self, session_id: str, token_hash: str) -> None:
        res = await self._script(_SESSION_DELETE, session_id, [token_hash])
        if _s(res) != "ok":
            raise SessionNotFound()
        await self.redis.call(
            "ZREM", keys.session_index(keys.session_partition(session_id)), session_id
        )

    async def set_holdings(
        self,
        session_id: str,
        token_hash: str,
        holdings: Mapping[str, float],
        val: Valuation,
        now: str,
        *,
        expect_holdings: Mapping[str, float] | None = None,
        expect_base: str | None = None,
    ) -> int | None:
        """New holdings (or the same in a new base currency) and their valuation; bumps
        basis_version and returns it. None, writing nothing, when the stored holdings or base
        currency are no longer the expected ones (value again). Raises SessionNotFound."""
        args: list[Arg] = [
            token_hash,
            canonical_holdings(holdings),
            val.total_text,
            val.prices_text,
            now,
        ]
        args += [val.tick, self.ttl_s, *_money(val)]
        args += ["" if expect_holdings is None else canonical_holdings(expect_holdings)]
        args += [expect_base or ""]
        res = await self._script(_SESSION_HOLDINGS, session_id, args)
        if _s(res) == "moved":
            return None
        if not isinstance(res, int):
            raise SessionNotFound()
        return res

    async def start_analysis(
        self, session_id: str, token_hash: str, ticker: str, run_id: str, now: str
    ) -> RunSnapshot:
        """Start the run for ``ticker`` and queue it on the run stream, atomically; for the
        ticker already running, re-announce that run if it is alive, else replace it with
        ``run_id`` (``taken_over``). Raises SessionNotFound, NotInPortfolio."""
        args: list[Arg] = [token_hash, ticker, run_id, now, self.ttl_s, keys.RUN_GROUP]
        args += [self.run_reclaim_ms, self.run_stream_maxlen, session_id]
        res = await self._script(_ANALYSIS_START, session_id, args, run_stream=True)
        if not isinstance(res, list):
            if _s(res) == "not_held":
                raise NotInPortfolio(f"{ticker} is not in the portfolio")
            raise SessionNotFound()
        return _snapshot(res)

    async def append_result(
        self, session_id: str, run_id: str, basis: int, result_id: str, result_json: str, n: int
    ) -> str:
        """'ok' | 'complete' | 'dup' | 'superseded' | 'stale' | 'gone' (see the script)."""
        (status,) = await self.append_results(
            session_id, run_id, basis, [(result_id, result_json)], n
        )
        return status

    async def append_results(
        self, session_id: str, run_id: str, basis: int, results: Sequence[tuple[str, str]], n: int
    ) -> list[str]:
        """Several results of one run that are due together, in one script run: each is checked
        and appended (with its own version and event) exactly as ``append_result`` would, one
        after the other, with nothing in between. Their statuses, as ``append_result``'s."""
        args: list[Arg] = [run_id, basis, self.results_cap, n]
        for rid, body in results:
            args += (rid, body)
        res = await self._script(_ANALYSIS_APPEND, session_id, args)
        return [_s(x) for x in res]

    async def restart_analysis(
        self, session_id: str, old_run_id: str, new_run_id: str, max_restarts: int, now: str
    ) -> RunSnapshot | str:
        """A RunSnapshot for the restarted run (queued on the run stream in the same step), or
        'failed' | 'superseded' | 'gone'."""
        args: list[Arg] = [old_run_id, new_run_id, max_restarts, now, "basis_changed"]
        args += [keys.RUN_GROUP, self.run_stream_maxlen, session_id]
        res = await self._script(_ANALYSIS_RESTART, session_id, args, run_stream=True)
        return _snapshot(res) if isinstance(res, list) else _s(res)

    async def resume_analysis(
        self, session_id: str, run_id: str, entry_id: str
    ) -> ResumedRun | None:
        """The run queued as ``entry_id``, if it is still the session's current running run:
        its basis, read atomically; None when it has ended, was superseded or handed back."""
        args: list[Arg] = [run_id, entry_id, keys.RUN_GROUP]
        res = await self._script(_ANALYSIS_RESUME, session_id, args, run_stream=True)
        if not isinstance(res, list):
            return None
        return ResumedRun(_snapshot(res[:10]), int(res[10]), int(res[11]))

    async def hand_back_run(self, session_id: str, run_id: str, entry_id: str) -> str | None:
        """Give a run back to the stream (a stopping worker): queued again at once if it is
        still current and running (the new entry id), else None; ``entry_id`` is acknowledged
        either way. Idempotent."""
        args: list[Arg] = [keys.RUN_GROUP, entry_id, run_id, self.run_stream_maxlen, session_id]
        res = _s(await self._script(_ANALYSIS_HANDBACK, session_id, args, run_stream=True))
        return None if res == "over" else res

    async def fail_analysis(self, session_id: str, run_id: str, reason: str) -> str:
        """'failed' | 'superseded' | 'gone'."""
        args: list[Arg] = [run_id, reason]
        return _s(await self._script(_ANALYSIS_FAIL, session_id, args))

    async def cancel_analysis(self, session_id: str, token_hash: str, now: str) -> str | None:
        """The cancelled run id, or None when nothing was running. Raises SessionNotFound."""
        args: list[Arg] = [token_hash, now, self.ttl_s, keys.RUN_GROUP]
        res = _s(await self._script(_ANALYSIS_CANCEL, session_id, args, run_stream=True))
        if res == "gone":
            raise SessionNotFound()
        return None if res == "idle" else res

    async def exists(self, session_id: str) -> bool:
        return bool(await self.redis.call("EXISTS", keys.session(session_id)))

    async def pttl_ms(self, session_id: str) -> int:
        """Milliseconds to expiry; -2 when the session is gone."""
        return int(await self.redis.call("PTTL", keys.session(session_id)))

    # -- the valuation sweep -----------------------------------------------------------------

    async def partitions_by_node(self) -> list[list[int]]:
        """The partitions grouped by the Redis node serving them: one group on one server, a
        group per primary on a cluster (the sweep walks the groups in parallel)."""
        topology = await self.redis.topology()
        groups: dict[tuple[str | None, str, int], list[int]] = {}
        for partition in partitions.ALL:
            node = await topology.node_for(keys.session_index(partition))
            groups.setdefault((node.path, node.host, node.port), []).append(partition)
        return list(groups.values())

    async def indexed(
        self, page: int, among: Iterable[int] = partitions.ALL
    ) -> AsyncIterator[list[str]]:
        """The ids of every indexed session (of the partitions ``among``), ``page`` at a time:
        each partition's index in turn, oldest first (a page holds one partition's sessions,
        one slot)."""
        for partition in among:
            index = keys.session_index(partition)
            start = 0
            while True:
                ids = await self.redis.call("ZRANGE", index, start, start + page - 1)
                if not ids:
                    break
                start += len(ids)
                yield [_s(x) for x in ids]

    async def revalue_many(
        self, tick: int, valued_at: str, revaluations: Sequence[Revaluation], read: Sequence[str]
    ) -> tuple[list[RevalueOutcome], list[HoldingsAt | None]]:
        """``revalue`` for ``Revaluation`` objects."""
        items = [
            (r.session_id, r.version, r.total, (r.prices_text, r.fx_text, r.flags_text))
            for r in revaluations
        ]
        return await self.revalue(tick, valued_at, items, read)

    async def revalue(
        self, tick: int, valued_at: str, items: Sequence[RevalueItem], read: Sequence[str]
    ) -> tuple[list[RevalueOutcome], list[HoldingsAt | None]]:
        """Revalue sessions at ``tick`` and read the holdings of the sessions in ``read`` (None:
        gone), all in one round trip: one ``session_revalue_many.lua`` call per ``BATCH``
        sessions of a partition (every key declared, one slot), each session checked, written
        and published exactly as ``session_revalue.lua`` would (the same Lua function), one
        after the other. A session in ``read`` goes through the same call with no holdings
        version, so it answers with its holdings. On a cluster each call goes to its slot's
        primary (``pipeline_packed``: pipelined per primary, the primaries in parallel).
        Never touches a TTL or recreates a session; an error on one session is its outcome
        (``RedisUnavailable``); raises ``RedisUnavailable`` if Redis fails."""
        n = len(items)
        by_partition: dict[int, list[RevalueItem]] = {}
        positions: dict[int, list[int]] = {}
        for i, item in enumerate(items):
            p = partitions.partition_of(item[0])
            if p in by_partition:
                by_partition[p].append(item)
                positions[p].append(i)
            else:
                by_partition[p], positions[p] = [item], [i]
        for j, sid in enumerate(read):
            p = partitions.partition_of(sid)
            by_partition.setdefault(p, []).append((sid, _NO_HV, None, _READ))
            positions.setdefault(p, []).append(n + j)
        commands: list[Command] = [("SCRIPT", "LOAD", _REVALUE_MANY.source)]
        batches: list[list[int]] = []
        for p, group in by_partition.items():
            at = positions[p]
            for start in range(0, len(group), BATCH):
                commands.append(_revalue_call(p, tick, valued_at, group[start : start + BATCH]))
                batches.append(at[start : start + BATCH])
        replies = await self.redis.pipeline_packed(commands, paced=True)
        if isinstance(replies[0], RedisUnavailable):
            raise replies[0]
        results: list[RevalueOutcome | None] = [None] * (n + len(read))
        parsed: dict[tuple[bytes, bytes, bytes], HoldingsAt] = {}  # bound: this call's sessions
        for batch, reply in zip(batches, replies[1:], strict=True):
            _unpack_batch(batch, reply, results, parsed, self.redis.url)
        outcomes = cast(list[RevalueOutcome], results[:n])
        found: list[HoldingsAt | None] = []
        for r in results[n:]:
            if isinstance(r, RedisUnavailable):  # not a hash: nothing this store wrote
                raise r
            found.append(r if isinstance(r, HoldingsAt) else None)
        return outcomes, found

    async def unindex_gone(self, session_ids: Sequence[str], older_than_ms: int) -> int:
        """Drop from the index those of ``session_ids`` indexed at or before ``older_than_ms``
        (younger ones may be mid-creation); the number dropped. One script per partition."""
        by_partition: dict[int, list[str]] = {}
        for sid in session_ids:
            by_partition.setdefault(keys.session_partition(sid), []).append(sid)
        dropped = 0
        for partition, ids in by_partition.items():
            index = keys.session_index(partition)
            dropped += int(await self._prune([index], [older_than_ms, *ids]))
        return dropped


def _money(val: Valuation) -> list[Arg]:
    """The currency fields of a valuation, as the create and holdings scripts take them."""
    return [val.base_currency, val.currencies_text, val.fx_text, val.flags_text]


def _holdings_at(
    version: bytes, holdings: bytes, currencies: bytes | None, base: bytes | None
) -> HoldingsAt:
    return HoldingsAt(
        version,
        json.loads(holdings),
        json.loads(currencies) if currencies else {},
        _s(base) if base else "USD",
    )


def _revalue_call(
    partition: int, tick: int, valued_at: str, batch: Sequence[RevalueItem]
) -> Command:
    """The ``session_revalue_many`` call of ``batch`` (sessions of ``partition``), each basis
    sent once and named by its number."""
    bases: dict[Basis, int] = {}
    session_keys: list[str] = []
    per_session: list[bytes | str | int] = []
    hash_head, events_head = keys.session_keys(partition, "")  # + the id: the session's keys
    for sid, hv, total, basis in batch:
        b = bases.get(basis)
        if b is None:
            b = bases[basis] = len(bases) + 1
        session_keys += (hash_head + sid, events_head + sid)
        per_session += (hv, "" if total is None else repr(total), b)
    return (
        "EVALSHA", _REVALUE_MANY.sha, len(session_keys), *session_keys,
        tick, valued_at, len(bases), *(text for basis in bases for text in basis), *per_session,
    )  # fmt: skip


def _unpack_batch(
    batch: Sequence[int],
    reply: Any,
    results: list[RevalueOutcome | None],
    parsed: dict[tuple[bytes, bytes, bytes], HoldingsAt],
    url: str,
) -> None:
    """A ``session_revalue_many`` reply into ``results`` at the batch's positions: 'updated',
    'unchanged', 'gone', the moved holdings, or the session's error (also for every session of
    a call that failed as a whole)."""
    if isinstance(reply, RedisUnavailable):
        for i in batch:
            results[i] = reply
        return
    codes, details = reply
    more = iter(details)
    for i, code in zip(batch, codes, strict=True):  # codes: bytes, one letter per session
        if code == 117:  # u
            results[i] = "updated"
        elif code == 115:  # s: the same, or a newer tick is stored
            results[i] = "unchanged"
        elif code == 103:  # g
            results[i] = "gone"
        elif code == 104:  # h: its holdings moved on (or were not known)
            hv, holdings, currencies, base = next(more)
            like = parsed.get((holdings, currencies, base))
            if like is None:
                like = parsed[holdings, currencies, base] = _holdings_at(
                    hv, holdings, currencies or None, base or None
                )
            results[i] = like if like.version == hv else like.at_version(hv)
        else:
            results[i] = RedisUnavailable(f"redis: {_s(next(more))}", url=url)


def _snapshot(res: list[Any]) -> RunSnapshot:
    kind, run_id, basis, superseded, holdings, prices, tick, fx, currencies, base = (
        _s(x) for x in res
    )
    return RunSnapshot(
        run_id=run_id,
        basis_version=int(basis),
        holdings=json.loads(holdings),
        prices=json.loads(prices),
        tick=int(tick),
        superseded_run_id=superseded or None,
        already_running=kind == "running",
        taken_over=kind == "taken_over",
        fx=json.loads(fx) if fx else {},
        currencies=json.loads(currencies) if currencies else {},
        base_currency=base or "USD",
    )
