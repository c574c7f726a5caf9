"""A Redis lease: at most one holder at a time among all instances (leader election).

The lease is fenced downstream, not here: the valuation tick is a monotonic counter and the
revalue script refuses a tick older than the one stored, so a deposed leader that still
believes it leads cannot overwrite a newer revaluation.
"""

from __future__ import annotations

import uuid

from marketpulse.infra.redis.client import RedisClient
from marketpulse.infra.redis.scripts import ScriptFolder

SCRIPTS = ScriptFolder("marketpulse.infra.redis")


class Lease:
    """Raises ``RedisUnavailable`` when Redis does not answer (the holder is then unknown)."""

    def __init__(
        self, redis: RedisClient, key: str, ttl_s: float, owner: str | None = None
    ) -> None:
        self.key = key
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.owner = owner or uuid.uuid4().hex
        self._renew = redis.script(SCRIPTS, "lease_renew")
        self._release = redis.script(SCRIPTS, "lease_release")

    async def acquire(self) -> bool:
        """Take or extend the lease; True while we hold it."""
        return bool(await self._renew([self.key], [self.owner, self.ttl_ms]))

    async def release(self) -> None:
        await self._release([self.key], [self.owner])
