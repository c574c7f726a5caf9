"""The alert outbox: fired alerts as durable deliveries on a Redis Streams consumer group.

``alert_transition.lua`` adds each fire to ``keys.ALERT_OUTBOX`` (``MAXLEN ~``
``store.OUTBOX_CAP``) in the step that decides it. Each channel has its own group
(``keys.alert_delivery_group``), so every channel gets every fire once across all instances.
A consumer reads with ``XREADGROUP``; once it has delivered, ``outbox_delivered.lua`` records
the delivery (``keys.alert_deliveries``, a hash channel -> time with a TTL) and acknowledges
the entry (``XACK``) in one step. An entry not acknowledged (a failed delivery, a consumer
that died) stays pending and is taken over with ``XAUTOCLAIM`` once idle past the reclaim
bound; ``XPENDING``'s delivery count says how many attempts it has had.

A group is created at the stream's end (``$``) the first time its channel is used (the engine
does so before its first fire can be decided): a channel added later is not sent the fires
already in the outbox. Every method raises ``RedisUnavailable`` when Redis fails.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from marketpulse.alerts.event import FiredAlert
from marketpulse.alerts.store import DELIVERIES_TTL_S, SCRIPTS
from marketpulse.infra.redis import keys
from marketpulse.infra.redis.client import RedisClient
from marketpulse.infra.redis.stream_group import Entry, StreamGroup
from marketpulse.timefmt import iso_z

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One fire to deliver on one channel. ``attempt`` counts this delivery (1 when read
    fresh; XPENDING's delivery count when reclaimed). ``alert`` is None for an entry that
    cannot be read (it is given up at once)."""

    entry_id: str
    alert: FiredAlert | None
    attempt: int


def _entry(entry: Entry, attempt: int) -> OutboxEntry:
    entry_id, fields = entry
    try:
        alert: FiredAlert | None = FiredAlert.model_validate_json(fields["alert"])
    except (KeyError, ValidationError) as exc:
        log.error("outbox entry %s is not a fired alert: %r", entry_id, exc)
        alert = None
    return OutboxEntry(entry_id, alert, attempt)


class AlertOutbox:
    """The outbox's stream commands: one consumer group per channel
    (``infra/redis/stream_group.py``)."""

    def __init__(self, redis: RedisClient, *, deliveries_ttl_s: int = DELIVERIES_TTL_S) -> None:
        self.redis = redis
        self.url = redis.url
        self._ttl = deliveries_ttl_s
        self._delivered = redis.script(SCRIPTS, "outbox_delivered")
        self._groups: dict[str, StreamGroup] = {}

    def group(self, channel: str) -> StreamGroup:
        g = self._groups.get(channel)
        if g is None:
            g = StreamGroup(self.redis, keys.ALERT_OUTBOX, keys.alert_delivery_group(channel))
            self._groups[channel] = g
        return g

    def forget(self, channel: str) -> None:
        """Drop ``channel``'s group handle (a named channel deleted or restarted)."""
        self._groups.pop(channel, None)

    async def ensure_groups(self, channels: Sequence[str]) -> None:
        """Create the stream and each channel's group, at the stream's end, if missing
        (idempotent)."""
        for channel in channels:
            await self.group(channel).ensure("$")

    async def read(
        self, channel: str, consumer: str, count: int, block_ms: int | None
    ) -> list[OutboxEntry]:
        """New fires for ``channel`` (they become ``consumer``'s pending entries); waits up to
        ``block_ms`` for one (None: does not wait)."""
        return [_entry(e, 1) for e in await self.group(channel).read(consumer, count, block_ms)]

    async def reclaim(
        self, channel: str, consumer: str, min_idle_ms: int, count: int
    ) -> list[OutboxEntry]:
        """Take over ``channel``'s entries idle for ``min_idle_ms`` (failed deliveries, and
        those of consumers that died), with their delivery counts."""
        group = self.group(channel)
        claimed = await group.reclaim(consumer, min_idle_ms, count)
        if not claimed:
            return []
        ids = sorted((entry_id for entry_id, _ in claimed), key=_order)
        counts = dict(await group.pending(consumer, ids[0], ids[-1], len(ids) + 1000))
        return [_entry(e, counts.get(e[0], 1)) for e in claimed]

    async def delivered(self, channel: str, entry: OutboxEntry, at: datetime) -> None:
        """Record that ``channel`` delivered ``entry``'s fire at ``at`` and acknowledge it."""
        assert entry.alert is not None
        await self._delivered(
            [keys.ALERT_OUTBOX, keys.alert_deliveries(entry.alert.id)],
            [keys.alert_delivery_group(channel), entry.entry_id, channel, iso_z(at), self._ttl],
        )

    async def give_up(self, channel: str, entry_id: str) -> None:
        """Acknowledge an entry without delivering it."""
        await self.group(channel).ack([entry_id])

    async def pending(self, channel: str) -> int:
        """The entries of ``channel`` read but not acknowledged (0 without a group)."""
        return await self.group(channel).pending_count()

    async def prune_consumers(self, channel: str, min_idle_ms: int) -> int:
        """Forget ``channel``'s consumers with nothing pending, silent for ``min_idle_ms``
        (instances that are gone; a live one is recreated by its next read)."""
        return await self.group(channel).prune_consumers(min_idle_ms)


def _order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
