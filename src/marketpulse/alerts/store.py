"""Where alerts live: definitions, monitored symbols, armed/fired state, volume windows, history.

``AlertStore`` is the port; ``RedisAlertStore`` the real adapter (every read-modify-write is one
Lua script in ``lua/``), ``MemoryAlertStore`` (in ``memory_store.py``) the in-process one.

Redis layout (names in ``keys.py``): ``ALERTS`` hash id -> definition JSON, ``ALERTS_VERSION``
counter, ``alert_state(id)`` hash per alert (one key per script call, so a cluster is fine),
``volume_window(symbol)`` sorted set, ``SYMBOLS`` set, ``ALERT_HISTORY`` capped stream, the
monitor's ``MONITOR_CURSOR`` (the last market tick it evaluated completely), and the delivery
outbox ``ALERT_OUTBOX`` with each fire's delivery record ``alert_deliveries(fire id)`` (the
outbox's consumers are in ``outbox.py``).

A fire is decided, queued for delivery on the outbox and appended to the history in one
script (``alert_transition.lua``); history reads each fire's deliveries when it is read.

The monitored symbols are "chosen" once anything wrote them (a seeded default watchlist, or an
add or remove, in the same atomic step as the marker ``SYMBOLS_CHOSEN``): ``seed_symbols``
fills them only while they never were, so a watchlist emptied on purpose stays empty.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import NamedTuple, Protocol, cast

from marketpulse.alerts.event import FiredAlert
from marketpulse.alerts.rules import (
    VOLUME_WINDOW,
    AlertCondition,
    AlertState,
    Outcome,
    initial_state,
)
from marketpulse.alerts.splits import CorporateAction
from marketpulse.infra.redis import keys
from marketpulse.infra.redis.client import RedisClient
from marketpulse.infra.redis.scripts import ScriptFolder
from marketpulse.timefmt import iso_z

SCRIPTS = ScriptFolder("marketpulse.alerts")
PORTFOLIO_PREFIX = b"portfolio:"  # the history "symbol" of a portfolio alert's fire

HISTORY_CAP = 10_000
OUTBOX_CAP = 100_000  # outbox entries kept (approximately): far beyond any delivery backlog
DELIVERIES_TTL_S = 30 * 86400  # how long a fire's delivery record is kept (history reads it)
SPLIT_SEEN_TTL_S = 30 * 86400  # a symbol's last observations, kept while it is observed
SPLIT_MARKER_TTL_S = 400 * 86400  # a split applied: far past any source's report of it


class SplitApplied(NamedTuple):
    """What ``apply_split`` did: ``applied`` (this call applied it; else it had been, at
    observation ``at``) and the ids of the alerts it rewrote."""

    applied: bool
    rewritten: list[str]
    at: int | None


class AlertStore(Protocol):
    """Persistence of the alert engine. ``apply`` is atomic and idempotent per observation."""

    async def add(self, alert: AlertCondition, *, cap: int = 0, reset: bool = False) -> bool: ...
    async def remove(self, alert_id: str) -> bool: ...
    async def all(self) -> list[AlertCondition]: ...
    async def version(self) -> int: ...
    async def apply(
        self,
        alert: AlertCondition,
        *,
        obs: int,
        truth: bool,
        at: float,
        fired: FiredAlert | None,
        rearm: bool | None = None,
    ) -> Outcome: ...
    async def states(self, alert_ids: Sequence[str]) -> dict[str, AlertState]: ...
    async def volumes(self, symbol: str, *, obs: int, volume: int) -> list[int]: ...
    async def record_delivery(self, fire_id: str, channel: str, at: datetime) -> None: ...
    async def history(self, symbol: str | None, limit: int) -> list[FiredAlert]: ...
    async def add_symbol(self, symbol: str, *, cap: int = 0) -> bool | None: ...
    async def remove_symbol(self, symbol: str) -> bool: ...
    async def symbols(self) -> list[str]: ...
    async def seed_symbols(self, symbols: Sequence[str]) -> list[str]: ...
    async def cursor(self) -> int | None: ...
    async def advance_cursor(self, tick: int) -> None: ...
    # splits (issue 19, docs/alerts.md "Splits"; ``alerts/split_guard.py``)
    async def observe_price(
        self, symbol: str, *, obs: int, price: float, day: str
    ) -> tuple[float, str] | None: ...
    async def raw_alerts(self) -> dict[str, str]: ...
    async def apply_split(
        self, action: CorporateAction, rewrites: Sequence[tuple[str, str, str, str]]
    ) -> SplitApplied: ...
    async def corporate_actions(self, symbol: str | None, limit: int) -> list[CorporateAction]: ...


def as_text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _is_price_fire(fields: dict[bytes, bytes]) -> bool:
    """A price alert's fire: not another kind of entry (a corporate action), nor a session's
    portfolio alert (only its token reads it)."""
    return b"alert" in fields and not fields.get(b"symbol", b"").startswith(PORTFOLIO_PREFIX)


def _is_corporate_action(fields: dict[bytes, bytes]) -> bool:
    return fields.get(b"kind") == b"corporate_action"


async def read_states(
    redis: RedisClient, alert_ids: Sequence[str], state_keys: Sequence[str]
) -> dict[str, AlertState]:
    """The stored state hash (what ``alert_transition.lua`` writes) of each alert that has one,
    in one pipelined read: a price alert's or a portfolio alert's (their keys differ)."""
    fields = ("armed", "obs", "fired_at", "muted")
    rows = await redis.pipeline([("HMGET", k, *fields) for k in state_keys])
    out: dict[str, AlertState] = {}
    for alert_id, (armed, obs, fired_at, muted) in zip(alert_ids, rows, strict=True):
        if armed is None and obs is None:
            continue
        out[alert_id] = AlertState(
            armed=armed is None or as_text(armed) != "0",
            last_obs=None if obs is None else int(obs),
            last_fired_at=None if fired_at is None else float(fired_at),
            muted=muted is not None and as_text(muted) == "1",
        )
    return out


def _deliveries(raw: dict[bytes, bytes] | None) -> dict[str, datetime]:
    return {as_text(k): datetime.fromisoformat(as_text(v)) for k, v in (raw or {}).items()}


class RedisAlertStore:
    """The alert store on Redis. Every method raises ``RedisUnavailable`` when Redis fails
    (the outcome of a write is then unknown)."""

    def __init__(self, redis: RedisClient, *, history_cap: int = HISTORY_CAP) -> None:
        self._redis = redis
        self._cap = history_cap
        self._transition = redis.script(SCRIPTS, "alert_transition")
        self._volume = redis.script(SCRIPTS, "alert_volume")
        self._seed = redis.script(SCRIPTS, "seed_symbols")
        self._cursor = redis.script(SCRIPTS, "monitor_cursor")
        self._add = redis.script(SCRIPTS, "alert_add")
        self._add_symbol = redis.script(SCRIPTS, "symbol_add")
        self._split_observe = redis.script(SCRIPTS, "split_observe")
        self._split_apply = redis.script(SCRIPTS, "split_apply")
        self.url = redis.url

    @property
    def redis(self) -> RedisClient:
        return self._redis

    async def add(self, alert: AlertCondition, *, cap: int = 0, reset: bool = False) -> bool:
        """Atomic: store (or replace) ``alert``; False, storing nothing, when it is new and
        ``cap`` (> 0) conditions are stored already. A new alert's state is its initial one
        (``rules.initial_state``: a crossing starts disarmed); ``reset`` (an edit) sets an
        existing one's so too, else a replaced alert keeps its state."""
        keys_ = [keys.ALERTS, keys.alert_state(alert.id), keys.ALERTS_VERSION]
        armed = "1" if initial_state(alert).armed else "0"
        args = [alert.id, alert.model_dump_json(), cap, armed, "1" if reset else "0"]
        answer = await self._add(keys_, args)
        return as_text(answer) == "ok"

    async def remove(self, alert_id: str) -> bool:
        removed, _, _ = await self._redis.pipeline(
            [
                ("HDEL", keys.ALERTS, alert_id),
                ("DEL", keys.alert_state(alert_id)),
                ("INCR", keys.ALERTS_VERSION),
            ],
            transaction=True,
        )
        return bool(removed)

    async def all(self) -> list[AlertCondition]:
        raw: dict[bytes, bytes] = await self._redis.call("HGETALL", keys.ALERTS)
        return [AlertCondition.model_validate_json(v) for v in raw.values()]

    async def version(self) -> int:
        return int(await self._redis.call("GET", keys.ALERTS_VERSION) or 0)

    async def apply(
        self,
        alert: AlertCondition,
        *,
        obs: int,
        truth: bool,
        at: float,
        fired: FiredAlert | None,
        rearm: bool | None = None,
    ) -> Outcome:
        """Decide one observation; a fire (``fired``: the alert as it fires, given when
        ``truth``) is queued on the outbox (unless ``fired.muted``: snoozed) and appended to
        the history in the same step. ``rearm`` (default: not ``truth``): a false observation
        beyond the re-arm margin; a false one within it changes nothing."""
        expires = "" if alert.expires_at is None else repr(alert.expires_at.timestamp())
        body, fire_id = ("", "") if fired is None else (fired.model_dump_json(), fired.id)
        tri = "1" if truth else "0" if (rearm is None or rearm) else "m"
        muted = "1" if fired is not None and fired.muted else "0"
        args = [
            str(obs), tri, repr(at), repr(alert.cooldown_s), expires,
            body, fire_id, alert.symbol, str(OUTBOX_CAP), str(self._cap), muted,
        ]  # fmt: skip
        if truth and fired is None:
            raise ValueError("a true observation needs the alert it would fire")
        raw = await self._transition(
            [keys.alert_state(alert.id), keys.ALERT_OUTBOX, keys.ALERT_HISTORY], args
        )
        return Outcome(as_text(raw))

    async def states(self, alert_ids: Sequence[str]) -> dict[str, AlertState]:
        """The stored state of each of ``alert_ids`` that has one (one pipelined read)."""
        if not alert_ids:
            return {}
        return await read_states(self._redis, alert_ids, [keys.alert_state(i) for i in alert_ids])

    async def volumes(self, symbol: str, *, obs: int, volume: int) -> list[int]:
        args = [str(obs), str(volume), str(VOLUME_WINDOW)]
        raw = await self._volume([keys.volume_window(symbol)], args)
        return [int(as_text(m).rsplit(":", 1)[1]) for m in raw]

    async def record_delivery(self, fire_id: str, channel: str, at: datetime) -> None:
        """Record a delivery made outside the outbox (the first time per channel is kept)."""
        key = keys.alert_deliveries(fire_id)
        await self._redis.pipeline(
            [("HSETNX", key, channel, iso_z(at)), ("EXPIRE", key, DELIVERIES_TTL_S)],
            transaction=True,
        )

    async def history(self, symbol: str | None, limit: int) -> list[FiredAlert]:
        """Newest first; with ``symbol``, pages through the (capped) stream to find ``limit``."""
        out = [
            FiredAlert.model_validate_json(fields[b"alert"])
            async for fields in self._history_entries(symbol, limit, _is_price_fire)
        ]
        if not out:
            return out
        records = await self._redis.pipeline(
            [("HGETALL", keys.alert_deliveries(f.id)) for f in out]
        )
        return [f.delivered(_deliveries(r)) for f, r in zip(out, records, strict=True)]

    async def add_symbol(self, symbol: str, *, cap: int = 0) -> bool | None:
        """Atomic: monitor ``symbol``; True if added, False if it was monitored already, None
        (nothing changed) when it is new and ``cap`` (> 0) symbols are monitored already."""
        added = int(await self._add_symbol([keys.SYMBOLS, keys.SYMBOLS_CHOSEN], [symbol, cap]))
        return None if added < 0 else bool(added)

    async def remove_symbol(self, symbol: str) -> bool:
        removed, _ = await self._redis.pipeline(
            [("SREM", keys.SYMBOLS, symbol), ("SET", keys.SYMBOLS_CHOSEN, "1")], transaction=True
        )
        return bool(removed)

    async def symbols(self) -> list[str]:
        return sorted(as_text(s) for s in await self._redis.call("SMEMBERS", keys.SYMBOLS))

    async def seed_symbols(self, symbols: Sequence[str]) -> list[str]:
        """Atomic: monitor ``symbols`` if the monitored symbols were never chosen (then they
        are); returns the symbols added, [] when they had been chosen (or ``symbols`` is
        empty, which marks nothing). A set stored before the marker existed counts as chosen."""
        if not symbols:
            return []
        added = await self._seed([keys.SYMBOLS, keys.SYMBOLS_CHOSEN], list(symbols))
        return list(symbols) if int(added) else []

    async def cursor(self) -> int | None:
        """The last market tick the monitor evaluated completely (None: never)."""
        raw = await self._redis.call("GET", keys.MONITOR_CURSOR)
        return None if raw is None else int(raw)

    async def advance_cursor(self, tick: int) -> None:
        """Move the cursor to ``tick`` unless it is already past it (atomic)."""
        await self._cursor([keys.MONITOR_CURSOR], [tick])

    # -- splits --------------------------------------------------------------------------------

    async def observe_price(
        self, symbol: str, *, obs: int, price: float, day: str
    ) -> tuple[float, str] | None:
        """Record observation ``obs`` of ``symbol`` (its price and session day); the price and
        day of the observation before it, or None (``split_observe.lua``)."""
        args = [str(obs), repr(price), day, str(SPLIT_SEEN_TTL_S)]
        raw = await self._split_observe([keys.split_seen(symbol)], args)
        if not raw:
            return None
        return float(as_text(raw[0])), as_text(raw[1])

    async def raw_alerts(self) -> dict[str, str]:
        """Every stored alert definition as stored (id -> JSON)."""
        raw: dict[bytes, bytes] = await self._redis.call("HGETALL", keys.ALERTS)
        return {as_text(k): as_text(v) for k, v in raw.items()}

    async def apply_split(
        self, action: CorporateAction, rewrites: Sequence[tuple[str, str, str, str]]
    ) -> SplitApplied:
        """Atomic and once per (symbol, ex-date) (``split_apply.lua``): multiply the volume
        baseline by the ratio, rewrite each alert ``(id, JSON as read, new JSON, its entry in
        the event's rebased list)`` still stored as read, append the action to the history
        and publish it on the dashboards' channel."""
        head = action.model_dump_json(exclude={"rebased"})[:-1]
        args: list[str] = [
            str(action.observation), repr(action.ratio), str(SPLIT_MARKER_TTL_S),
            str(self._cap), action.symbol, head, keys.QUOTE_EVENTS_ALL,
        ]  # fmt: skip
        for rewrite in rewrites:
            args.extend(rewrite)
        keys_ = [
            keys.split_applied(action.symbol, action.split_date),
            keys.volume_window(action.symbol),
            keys.ALERTS,
            keys.ALERTS_VERSION,
            keys.ALERT_HISTORY,
        ]
        raw = await self._split_apply(keys_, args)
        answer = [as_text(x) for x in raw]
        if answer[0] == "done":
            return SplitApplied(False, [], int(answer[1]))
        return SplitApplied(True, answer[1:], action.observation)

    async def corporate_actions(self, symbol: str | None, limit: int) -> list[CorporateAction]:
        """The corporate actions of the history stream, newest first (of ``symbol``)."""
        return [
            CorporateAction.model_validate_json(fields[b"event"])
            async for fields in self._history_entries(symbol, limit, _is_corporate_action)
        ]

    async def _history_entries(
        self, symbol: str | None, limit: int, wanted: Callable[[dict[bytes, bytes]], bool]
    ) -> AsyncIterator[dict[bytes, bytes]]:
        """Up to ``limit`` entries of the (capped) history stream, newest first, that are
        ``wanted`` (of ``symbol``, if given): paged, so a rare symbol's are found too."""
        found, start, page = 0, "+", max(limit, 100)
        while found < limit:
            raw = await self._redis.call("XREVRANGE", keys.ALERT_HISTORY, start, "-", "COUNT", page)
            rows = cast(list[tuple[bytes, dict[bytes, bytes]]], raw or [])
            for _, fields in rows:
                if wanted(fields) and (symbol is None or as_text(fields[b"symbol"]) == symbol):
                    yield fields
                    found += 1
                    if found == limit:
                        return
            if len(rows) < page:
                return
            start = "(" + as_text(rows[-1][0])
