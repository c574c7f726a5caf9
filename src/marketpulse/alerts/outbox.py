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
from typing import Any

from pydantic import ValidationError

from marketpulse.alerts.event import FiredAlert
from marketpulse.alerts.store import DELIVERIES_TTL_S, SCRIPTS
from marketpulse.errors import RedisUnavailable
from marketpulse.infra.redis import keys
from marketpulse.infra.redis.client import RedisClient
from marketpulse.timefmt import iso_z

log = logging.getLogger(__name__)

RECLAIM_PAGES = 10  # XAUTOCLAIM pages per reclaim pass


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One fire to deliver on one channel. ``attempt`` counts this delivery (1 when read
    fresh; XPENDING's delivery count when reclaimed). ``alert`` is None for an entry that
    cannot be read (it is given up at once)."""

    entry_id: str
    alert: FiredAlert | None
    attempt: int


def _s(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def _entry(raw_id: Any, fields: Any, attempt: int) -> OutboxEntry | None:
    if not fields:  # trimmed away while pending
        return None
    entry_id = _s(raw_id)
    try:
        alert: FiredAlert | None = FiredAlert.model_validate_json(fields[b"alert"])
    except (KeyError, ValidationError) as exc:
        log.error("outbox entry %s is not a fired alert: %r", entry_id, exc)
        alert = None
    return OutboxEntry(entry_id, alert, attempt)


class AlertOutbox:
    """The outbox's stream commands (on the pooled client: a blocking read holds one pooled
    connection per channel, never the scripts' pipelined one)."""

    def __init__(self, redis: RedisClient, *, deliveries_ttl_s: int = DELIVERIES_TTL_S) -> None:
        self.redis = redis
        self.url = redis.url
        self._ttl = deliveries_ttl_s
        self._delivered = redis.script(SCRIPTS, "outbox_delivered")

    async def ensure_groups(self, channels: Sequence[str]) -> None:
        """Create the stream and each channel's group if missing (idempotent)."""
        for channel in channels:
            try:
                await self.redis.call(
                    "XGROUP CREATE", keys.ALERT_OUTBOX, keys.alert_delivery_group(channel),
                    "$", "MKSTREAM",
                )  # fmt: skip
            except RedisUnavailable as exc:
                if "BUSYGROUP" not in exc.message:  # the error reply of a group that exists
                    raise

    async def read(
        self, channel: str, consumer: str, count: int, block_ms: int | None
    ) -> list[OutboxEntry]:
        """New fires for ``channel`` (they become ``consumer``'s pending entries); waits up to
        ``block_ms`` for one (None: does not wait)."""
        block: tuple[str | int, ...] = () if block_ms is None else ("BLOCK", block_ms)
        reply: Any = await self.redis.call(
            "XREADGROUP", "GROUP", keys.alert_delivery_group(channel), consumer, "COUNT", count,
            *block, "STREAMS", keys.ALERT_OUTBOX, ">",
        )  # fmt: skip
        out: list[OutboxEntry] = []
        for _stream, messages in reply or ():
            for raw_id, fields in messages:
                e = _entry(raw_id, fields, 1)
                if e is not None:
                    out.append(e)
        return out

    async def reclaim(
        self, channel: str, consumer: str, min_idle_ms: int, count: int
    ) -> list[OutboxEntry]:
        """Take over ``channel``'s entries idle for ``min_idle_ms`` (failed deliveries, and
        those of consumers that died), with their delivery counts."""
        group = keys.alert_delivery_group(channel)
        claimed: list[tuple[Any, Any]] = []
        cursor: Any = "0-0"
        for _ in range(RECLAIM_PAGES):
            reply: Any = await self.redis.call(
                "XAUTOCLAIM", keys.ALERT_OUTBOX, group, consumer, min_idle_ms, cursor,
                "COUNT", count,
            )  # fmt: skip
            cursor = reply[0]
            claimed += reply[1]
            if _s(cursor) == "0-0":
                break
        if not claimed:
            return []
        ids = sorted((_s(raw_id) for raw_id, _ in claimed), key=_order)
        pending: Any = await self.redis.call(
            "XPENDING", keys.ALERT_OUTBOX, group, ids[0], ids[-1], len(ids) + 1000, consumer,
            parse_detail=True,
        )  # fmt: skip
        counts = {_s(p["message_id"]): int(p["times_delivered"]) for p in pending}
        out: list[OutboxEntry] = []
        for raw_id, fields in claimed:
            e = _entry(raw_id, fields, counts.get(_s(raw_id), 1))
            if e is not None:
                out.append(e)
        return out

    async def delivered(self, channel: str, entry: OutboxEntry, at: datetime) -> None:
        """Record that ``channel`` delivered ``entry``'s fire at ``at`` and acknowledge it."""
        assert entry.alert is not None
        await self._delivered(
            [keys.ALERT_OUTBOX, keys.alert_deliveries(entry.alert.id)],
            [keys.alert_delivery_group(channel), entry.entry_id, channel, iso_z(at), self._ttl],
        )

    async def give_up(self, channel: str, entry_id: str) -> None:
        """Acknowledge an entry without delivering it."""
        await self.redis.call(
            "XACK", keys.ALERT_OUTBOX, keys.alert_delivery_group(channel), entry_id
        )

    async def pending(self, channel: str) -> int:
        """The entries of ``channel`` read but not acknowledged (0 without a group)."""
        try:
            reply: Any = await self.redis.call(
                "XPENDING", keys.ALERT_OUTBOX, keys.alert_delivery_group(channel)
            )
        except RedisUnavailable as exc:
            if "NOGROUP" in exc.message:
                return 0
            raise
        return int(reply["pending"])

    async def prune_consumers(self, channel: str, min_idle_ms: int) -> int:
        """Forget ``channel``'s consumers with nothing pending, silent for ``min_idle_ms``
        (instances that are gone; a live one is recreated by its next read)."""
        group = keys.alert_delivery_group(channel)
        consumers: Any = await self.redis.call("XINFO CONSUMERS", keys.ALERT_OUTBOX, group)
        gone = [c["name"] for c in consumers if c["pending"] == 0 and c["idle"] >= min_idle_ms]
        for name in gone:
            await self.redis.call("XGROUP DELCONSUMER", keys.ALERT_OUTBOX, group, name)
        return len(gone)


def _order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
