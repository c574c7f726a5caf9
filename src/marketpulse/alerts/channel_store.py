"""Where the named delivery channels live (issue 20): their rows, and the fires a quiet channel
holds. Every change is one Lua script (``lua/channel_*.lua``):

- ``put`` (create or replace a row) creates a new channel's consumer group on the outbox in the
  same step, at the outbox's end: a fire decided before the row existed is not the channel's.
- ``delete`` removes the row, its group and what it holds, in one step.
- ``hold`` keeps a fire during the quiet hours and acknowledges its outbox entry, in one step;
  ``released`` records the held fires' deliveries and forgets them once sent.

Keys (``infra/redis/keys.py``): ``CHANNELS`` (name -> row JSON), ``CHANNELS_VERSION``,
``channel_held(name)`` / ``channel_held_info(name)``, ``channel_release_lock(name)``; all under
the outbox's hash tag. Every method raises ``RedisUnavailable`` when Redis fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import ValidationError

from marketpulse.alerts.channels import HELD_CAP, Channel
from marketpulse.alerts.event import FiredAlert
from marketpulse.alerts.store import DELIVERIES_TTL_S, SCRIPTS
from marketpulse.infra.redis import keys
from marketpulse.infra.redis.client import RedisClient
from marketpulse.timefmt import iso_z

PutOutcome = Literal["ok", "exists", "missing", "full"]


@dataclass(frozen=True, slots=True)
class Held:
    """What a channel holds: the fires kept (the latest ``HELD_CAP``), how many were held in
    all, and since when."""

    fires: list[FiredAlert]
    count: int
    since: datetime | None


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


class RedisChannelStore:
    def __init__(self, redis: RedisClient, *, held_cap: int = HELD_CAP) -> None:
        self.redis = redis
        self.url = redis.url
        self.held_cap = held_cap
        self._put = redis.script(SCRIPTS, "channel_put")
        self._delete = redis.script(SCRIPTS, "channel_delete")
        self._hold = redis.script(SCRIPTS, "channel_hold")
        self._released = redis.script(SCRIPTS, "channel_released")

    async def all(self) -> list[Channel]:
        raw: dict[bytes, bytes] = await self.redis.call("HGETALL", keys.CHANNELS)
        rows = []
        for value in raw.values():
            try:
                rows.append(Channel.model_validate_json(value))
            except ValidationError:  # a row written by hand: skipped, not fatal
                continue
        return sorted(rows, key=lambda c: c.name)

    async def get(self, name: str) -> Channel | None:
        raw = await self.redis.call("HGET", keys.CHANNELS, name)
        return None if raw is None else Channel.model_validate_json(raw)

    async def version(self) -> int:
        return int(await self.redis.call("GET", keys.CHANNELS_VERSION) or 0)

    async def put(self, channel: Channel, *, create: bool, cap: int) -> PutOutcome:
        answer = await self._put(
            [keys.CHANNELS, keys.ALERT_OUTBOX, keys.CHANNELS_VERSION],
            [
                channel.name,
                channel.model_dump_json(),
                cap,
                keys.alert_delivery_group(channel.name),
                "create" if create else "replace",
            ],
        )
        outcome = _text(answer)
        assert outcome in ("ok", "exists", "missing", "full")
        return outcome  # type: ignore[return-value]

    async def delete(self, name: str) -> bool:
        removed = await self._delete(
            [
                keys.CHANNELS,
                keys.ALERT_OUTBOX,
                keys.CHANNELS_VERSION,
                keys.channel_held(name),
                keys.channel_held_info(name),
            ],
            [name, keys.alert_delivery_group(name)],
        )
        return bool(removed)

    async def hold(self, name: str, entry_id: str, fire: FiredAlert, at: datetime) -> bool:
        """Keep ``fire`` for after the quiet hours and acknowledge its entry; False if another
        consumer did so first."""
        held = await self._hold(
            [keys.ALERT_OUTBOX, keys.channel_held(name), keys.channel_held_info(name)],
            [keys.alert_delivery_group(name), entry_id, fire.model_dump_json(), iso_z(at),
             self.held_cap],
        )  # fmt: skip
        return bool(held)

    async def held(self, name: str) -> Held:
        fires_raw, info = await self.redis.pipeline(
            [("LRANGE", keys.channel_held(name), 0, -1), ("HGETALL", keys.channel_held_info(name))]
        )
        fires = [FiredAlert.model_validate_json(f) for f in fires_raw]
        fields = {_text(k): _text(v) for k, v in (info or {}).items()}
        since = datetime.fromisoformat(fields["since"]) if "since" in fields else None
        return Held(fires, int(fields.get("count", len(fires))), since)

    async def released(self, name: str, held: Held, at: datetime) -> None:
        """``held`` (as read) was sent at ``at``: record each fire's delivery on ``name`` and
        forget them."""
        await self._released(
            [
                keys.channel_held(name),
                keys.channel_held_info(name),
                *(keys.alert_deliveries(f.id) for f in held.fires),
            ],
            [name, iso_z(at), len(held.fires), held.count, DELIVERIES_TTL_S],
        )

    async def lock_release(self, name: str, owner: str, ttl_ms: int) -> bool:
        """Take the lock of releasing ``name``'s held fires (SET NX PX); True if taken."""
        return bool(
            await self.redis.call("SET", keys.channel_release_lock(name), owner, "NX", "PX", ttl_ms)
        )

    async def unlock_release(self, name: str) -> None:
        await self.redis.call("DEL", keys.channel_release_lock(name))

    async def add_cleared(self, cleared: FiredAlert, maxlen: int) -> None:
        """Queue a back-to-normal message on the outbox (``kind`` "cleared")."""
        await self.redis.call(
            "XADD", keys.ALERT_OUTBOX, "MAXLEN", "~", maxlen, "*",
            "f", cleared.id, "alert", cleared.model_dump_json(),
        )  # fmt: skip
