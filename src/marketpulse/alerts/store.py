"""Where alerts live: definitions, monitored symbols, armed/fired state, volume windows, history.

``AlertStore`` is the port; ``RedisAlertStore`` the real adapter (every read-modify-write is one
Lua script in ``lua/``), ``MemoryAlertStore`` (in ``memory_store.py``) the in-process one.

Redis layout (names in ``keys.py``): ``ALERTS`` hash id -> definition JSON, ``ALERTS_VERSION``
counter, ``alert_state(id)`` hash per alert (one key per script call, so a cluster is fine),
``volume_window(symbol)`` sorted set, ``SYMBOLS`` set, ``ALERT_HISTORY`` capped stream.

The monitored symbols are "chosen" once anything wrote them (a seeded default watchlist, or an
add or remove, in the same atomic step as the marker ``SYMBOLS_CHOSEN``): ``seed_symbols``
fills them only while they never were, so a watchlist emptied on purpose stays empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from marketpulse.alerts.event import FiredAlert
from marketpulse.alerts.rules import VOLUME_WINDOW, AlertCondition, Outcome
from marketpulse.errors import RedisUnavailable
from marketpulse.infra.redis import keys
from marketpulse.infra.redis.outage import url_of
from marketpulse.infra.redis.scripts import ScriptFolder

SCRIPTS = ScriptFolder("marketpulse.alerts")

HISTORY_CAP = 10_000


class AlertStore(Protocol):
    """Persistence of the alert engine. ``apply`` is atomic and idempotent per observation."""

    async def add(self, alert: AlertCondition) -> None: ...
    async def remove(self, alert_id: str) -> bool: ...
    async def all(self) -> list[AlertCondition]: ...
    async def version(self) -> int: ...
    async def apply(
        self, alert: AlertCondition, *, obs: int, truth: bool, at: float
    ) -> Outcome: ...
    async def volumes(self, symbol: str, *, obs: int, volume: int) -> list[int]: ...
    async def record(self, fired: FiredAlert) -> str: ...
    async def history(self, symbol: str | None, limit: int) -> list[FiredAlert]: ...
    async def add_symbol(self, symbol: str) -> bool: ...
    async def remove_symbol(self, symbol: str) -> bool: ...
    async def symbols(self) -> list[str]: ...
    async def seed_symbols(self, symbols: Sequence[str]) -> list[str]: ...


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


class RedisAlertStore:
    """The alert store on Redis. Redis errors surface as ``RedisUnavailable`` (unknown outcome)."""

    def __init__(self, redis: Redis, *, history_cap: int = HISTORY_CAP) -> None:
        self._redis = redis
        self._cap = history_cap
        self._transition = SCRIPTS.register(redis, "alert_transition")
        self._volume = SCRIPTS.register(redis, "alert_volume")
        self._seed = SCRIPTS.register(redis, "seed_symbols")
        self.url = url_of(redis)

    @property
    def redis(self) -> Redis:
        return self._redis

    async def add(self, alert: AlertCondition) -> None:
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(keys.ALERTS, alert.id, alert.model_dump_json())
                pipe.hsetnx(keys.alert_state(alert.id), "armed", "1")
                pipe.incr(keys.ALERTS_VERSION)
                await pipe.execute()
        except RedisError as exc:
            raise RedisUnavailable(f"could not store alert {alert.id}", url=self.url) from exc

    async def remove(self, alert_id: str) -> bool:
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hdel(keys.ALERTS, alert_id)
                pipe.delete(keys.alert_state(alert_id))
                pipe.incr(keys.ALERTS_VERSION)
                removed, _, _ = await pipe.execute()
        except RedisError as exc:
            raise RedisUnavailable(f"could not remove alert {alert_id}", url=self.url) from exc
        return bool(removed)

    async def all(self) -> list[AlertCondition]:
        try:
            raw = await self._redis.hgetall(keys.ALERTS)
        except RedisError as exc:
            raise RedisUnavailable("could not read alerts", url=self.url) from exc
        return [AlertCondition.model_validate_json(v) for v in raw.values()]

    async def version(self) -> int:
        try:
            raw = await self._redis.get(keys.ALERTS_VERSION)
        except RedisError as exc:
            raise RedisUnavailable("could not read the alerts version", url=self.url) from exc
        return int(raw or 0)

    async def apply(self, alert: AlertCondition, *, obs: int, truth: bool, at: float) -> Outcome:
        expires = "" if alert.expires_at is None else repr(alert.expires_at.timestamp())
        args = [str(obs), "1" if truth else "0", repr(at), repr(alert.cooldown_s), expires]
        try:
            raw = await self._transition(keys=[keys.alert_state(alert.id)], args=args)
        except RedisError as exc:
            raise RedisUnavailable(f"could not update alert {alert.id}", url=self.url) from exc
        return Outcome(_text(raw))

    async def volumes(self, symbol: str, *, obs: int, volume: int) -> list[int]:
        args = [str(obs), str(volume), str(VOLUME_WINDOW)]
        try:
            raw = await self._volume(keys=[keys.volume_window(symbol)], args=args)
        except RedisError as exc:
            raise RedisUnavailable(
                f"could not record the volume of {symbol}", url=self.url
            ) from exc
        return [int(_text(m).rsplit(":", 1)[1]) for m in raw]

    async def record(self, fired: FiredAlert) -> str:
        try:
            entry_id = await self._redis.xadd(
                keys.ALERT_HISTORY,
                {"symbol": fired.symbol, "alert": fired.model_dump_json()},
                maxlen=self._cap,
                approximate=True,
            )
        except RedisError as exc:
            raise RedisUnavailable("could not record alert history", url=self.url) from exc
        return _text(entry_id)

    async def history(self, symbol: str | None, limit: int) -> list[FiredAlert]:
        """Newest first; with ``symbol``, pages through the (capped) stream to find ``limit``."""
        out: list[FiredAlert] = []
        start = "+"
        page = max(limit, 100)
        try:
            while len(out) < limit:
                raw = await self._redis.xrevrange(keys.ALERT_HISTORY, start, "-", count=page)
                rows = cast(list[tuple[bytes, dict[bytes, bytes]]], raw or [])
                for _, fields in rows:
                    if symbol is None or _text(fields[b"symbol"]) == symbol:
                        out.append(FiredAlert.model_validate_json(fields[b"alert"]))
                        if len(out) == limit:
                            break
                if len(rows) < page:
                    break
                start = "(" + _text(rows[-1][0])
        except RedisError as exc:
            raise RedisUnavailable("could not read alert history", url=self.url) from exc
        return out

    async def add_symbol(self, symbol: str) -> bool:
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.sadd(keys.SYMBOLS, symbol)
                pipe.set(keys.SYMBOLS_CHOSEN, "1")
                added, _ = await pipe.execute()
            return bool(added)
        except RedisError as exc:
            raise RedisUnavailable(f"could not add {symbol}", url=self.url) from exc

    async def remove_symbol(self, symbol: str) -> bool:
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.srem(keys.SYMBOLS, symbol)
                pipe.set(keys.SYMBOLS_CHOSEN, "1")
                removed, _ = await pipe.execute()
            return bool(removed)
        except RedisError as exc:
            raise RedisUnavailable(f"could not remove {symbol}", url=self.url) from exc

    async def symbols(self) -> list[str]:
        try:
            return sorted(_text(s) for s in await self._redis.smembers(keys.SYMBOLS))
        except RedisError as exc:
            raise RedisUnavailable("could not read the monitored symbols", url=self.url) from exc

    async def seed_symbols(self, symbols: Sequence[str]) -> list[str]:
        """Atomic: monitor ``symbols`` if the monitored symbols were never chosen (then they
        are); returns the symbols added, [] when they had been chosen (or ``symbols`` is
        empty, which marks nothing). A set stored before the marker existed counts as chosen."""
        if not symbols:
            return []
        try:
            added = await self._seed(keys=[keys.SYMBOLS, keys.SYMBOLS_CHOSEN], args=list(symbols))
        except RedisError as exc:
            raise RedisUnavailable("could not seed the monitored symbols", url=self.url) from exc
        return list(symbols) if int(added) else []
