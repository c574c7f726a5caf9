"""The quote cache in Redis (the seed's ``CacheManager``).

Guarantees: batch reads are one ``MGET`` and batch writes one pipeline (one round trip either
way, never one per symbol); every key comes from ``keys.py`` under ``mp:cache:`` / ``mp:lastgood:``
so it never collides with session state, and the client may point at a separate Redis
(``MARKETPULSE_CACHE_URL``) whose eviction policy then never touches state. Live quotes expire
after the TTL; a tick-addressed quote is stored under its tick, so it is never served at another
tick. The last good quote of each symbol is kept without TTL beside the cache, for the stale
fallback. Values are the JSON of ``StockData`` plus ``fetched_at`` (epoch seconds).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from marketpulse.config import Settings
from marketpulse.errors import RedisUnavailable
from marketpulse.infra.redis import keys
from marketpulse.infra.redis.client import Command, RedisClient
from marketpulse.infra.redis.outage import display_url
from marketpulse.market.quotes import StockData


@dataclass(frozen=True, slots=True)
class CachedQuote:
    """A quote read back from Redis and when it was fetched (epoch seconds)."""

    quote: StockData
    fetched_at: float


@dataclass(frozen=True, slots=True)
class CacheLookup:
    """What one batch read found for a symbol: a fresh cached quote and/or its last good one."""

    fresh: CachedQuote | None
    last_good: CachedQuote | None


def encode(quote: StockData, fetched_at: float) -> bytes:
    body = quote.model_dump(mode="json", exclude={"stale", "age_s"})
    body["fetched_at"] = fetched_at
    return json.dumps(body, separators=(",", ":")).encode()


def decode(raw: bytes | str | None) -> CachedQuote | None:
    """A cached value, or None when absent or unreadable (a corrupt entry is a miss)."""
    if raw is None:
        return None
    try:
        body = json.loads(raw)
        fetched_at = float(body.pop("fetched_at", 0.0))
        return CachedQuote(StockData.model_validate(body), fetched_at)
    except (ValueError, TypeError, AttributeError, ValidationError):
        return None


class CacheManager:
    """Quotes cached in Redis with a TTL (default 300 s); counts hits and misses.

    ``CacheManager()`` uses the service's settings, read when it is built: the Redis at
    ``MARKETPULSE_CACHE_URL``, else ``MARKETPULSE_REDIS_URL``, else ``redis://127.0.0.1:6379/0``,
    and ``MARKETPULSE_CACHE_TTL``. Given a URL or a client, it reads no settings.
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        redis: RedisClient | None = None,
        ttl: int | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        if redis_url is None and redis is None:
            settings = Settings()  # read only when the caller gave no Redis
            redis_url = settings.cache_url or settings.client_redis_url()
            ttl = settings.cache_ttl if ttl is None else ttl
        self._url = redis_url
        self._redis = redis
        self._owns_client = redis is None
        self.url = redis.url if redis is not None else display_url(str(redis_url))
        self.ttl = 300 if ttl is None else ttl
        self._now = now
        self.hits = 0
        self.misses = 0

    async def connect(self) -> None:
        """Build the client from the URL; a no-op when a client was given."""
        if self._redis is None:
            assert self._url is not None  # set whenever no client was given
            self._redis = RedisClient.from_url(self._url)

    @property
    def redis(self) -> RedisClient:
        if self._redis is None:
            raise RedisUnavailable("CacheManager.connect() was not called")
        return self._redis

    async def close(self) -> None:
        if self._owns_client and self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def get_stock_data(self, symbol: str) -> StockData | None:
        found = await self.get_many([symbol])
        return found.get(symbol)

    async def latest(self, symbol: str) -> StockData | None:
        """The latest known quote of ``symbol``: the newer (by fetch time) of its live cached
        quote and its last good one, or None (what a new alert is evaluated against at once).
        Counts no hit or miss: this is no fetch."""
        names = [keys.quote_cache(symbol), keys.last_good_quote(symbol)]
        try:
            raw = await self.redis.call("MGET", *names)
        except RedisUnavailable as exc:
            raise RedisUnavailable(f"quote cache read failed: {exc.message}", url=exc.url) from exc
        found = [hit for hit in (decode(raw[0]), decode(raw[1])) if hit is not None]
        if not found:
            return None
        return aged(max(found, key=lambda hit: hit.fetched_at), self._now(), stale=False)

    async def set_stock_data(self, symbol: str, data: StockData, ttl: int | None = None) -> None:
        """Cache one live quote for ``ttl`` seconds (default: the manager's TTL)."""
        await self.set_many({symbol: data}, ttl)

    async def get_many(self, symbols: Sequence[str]) -> dict[str, StockData]:
        """Live cached quotes of the symbols that have one (one MGET); ``age_s`` set."""
        lookups = await self.lookup(symbols, tick=None)
        now = self._now()
        return {
            s: aged(hit.fresh, now, stale=False)
            for s, hit in lookups.items()
            if hit.fresh is not None
        }

    async def set_many(self, quotes: Mapping[str, StockData], ttl: int | None = None) -> None:
        """Cache live quotes (one pipeline)."""
        await self.store(quotes, ttl=ttl, tick=None, last_good=False)

    async def lookup(self, symbols: Sequence[str], *, tick: int | None) -> dict[str, CacheLookup]:
        """One MGET: per symbol, the live quote, else the quote cached at ``tick``, and the
        last good quote. Counts a hit or a miss per symbol."""
        if not symbols:
            return {}
        names: list[str] = []
        for s in symbols:
            names += [keys.quote_cache(s), keys.last_good_quote(s)]
            if tick is not None:
                names.append(keys.tick_quote_cache(s, tick))
        try:
            raw = await self.redis.call("MGET", *names)
        except RedisUnavailable as exc:
            raise RedisUnavailable(f"quote cache read failed: {exc.message}", url=exc.url) from exc
        width = 2 if tick is None else 3
        out: dict[str, CacheLookup] = {}
        for i, s in enumerate(symbols):
            row = raw[i * width : (i + 1) * width]
            fresh = decode(row[0])
            if fresh is None and tick is not None:
                fresh = decode(row[2])
            if fresh is None:
                self.misses += 1
            else:
                self.hits += 1
            out[s] = CacheLookup(fresh=fresh, last_good=decode(row[1]))
        return out

    async def store(
        self,
        quotes: Mapping[str, StockData],
        *,
        ttl: int | None,
        tick: int | None,
        last_good: bool,
    ) -> None:
        """Cache quotes in one pipeline: under the live key, or under ``tick`` when given;
        also as the last good quote when ``last_good``."""
        if not quotes:
            return
        expiry = ttl or self.ttl
        now = self._now()
        commands: list[Command] = []
        for symbol, quote in quotes.items():
            value = encode(quote, now)
            key = keys.quote_cache(symbol) if tick is None else keys.tick_quote_cache(symbol, tick)
            commands.append(("SET", key, value, "EX", expiry))
            if last_good:
                commands.append(("SET", keys.last_good_quote(symbol), value))
        try:
            await self.redis.pipeline(commands)
        except RedisUnavailable as exc:
            raise RedisUnavailable(f"quote cache write failed: {exc.message}", url=exc.url) from exc


def aged(hit: CachedQuote, now: float, *, stale: bool) -> StockData:
    """The cached quote with ``age_s`` (now - fetched_at) and ``stale`` set."""
    return hit.quote.model_copy(update={"age_s": max(0.0, now - hit.fetched_at), "stale": stale})
