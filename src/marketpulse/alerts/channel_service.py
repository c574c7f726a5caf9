"""The named channels' operations: create, change, read, delete, send a test, and queue a
back-to-normal message (the engine's hook when an alert re-arms).

- At most ``max_channels`` rows (``MARKETPULSE_MAX_CHANNELS``): past it a create is
  ``LimitReached`` (``too_many_channels``, 409). A name taken is ``ChannelExists`` (409), a
  missing one ``ChannelNotFound`` (404). An Apprise URL no plugin takes is stored: its test
  send answers "Apprise does not know this URL".
- Every row's secrets are handed to ``on_secrets`` (the log's redaction) before anything can
  log them; answers show rows masked (``Channel.masked``).
- ``test(name)`` sends a test message under the per-send timeout and answers the channel's own
  answer: ``(True, "ok")`` or ``(False, <its error, secrets masked>)``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

from marketpulse.alerts.channel_store import RedisChannelStore
from marketpulse.alerts.channels import Channel, mask_text, probe_message
from marketpulse.alerts.event import FiredAlert
from marketpulse.alerts.rules import BUILTIN_CHANNELS
from marketpulse.alerts.senders import Sender
from marketpulse.alerts.store import OUTBOX_CAP
from marketpulse.errors import ChannelExists, ChannelNotFound, LimitReached

log = logging.getLogger(__name__)


class ChannelService:
    def __init__(
        self,
        store: RedisChannelStore,
        make_sender: Callable[[Channel], Sender],
        *,
        max_channels: int,
        timeout_s: float = 10.0,
        on_secrets: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.store = store
        self.make_sender = make_sender
        self.max_channels = max_channels
        self.timeout_s = timeout_s
        self.on_secrets = on_secrets

    def _secrets(self, channel: Channel) -> None:
        if self.on_secrets is not None:
            self.on_secrets(channel.secrets())

    async def list(self) -> list[Channel]:
        rows = await self.store.all()
        for row in rows:
            self._secrets(row)
        return rows

    async def get(self, name: str) -> Channel:
        row = await self.store.get(name)
        if row is None:
            raise ChannelNotFound(f"no channel named {name!r}")
        self._secrets(row)
        return row

    def _check(self, channel: Channel) -> None:
        """Register the row's secrets. An Apprise URL no plugin takes is accepted (the API's
        schema cannot say which are): its test send and its deliveries answer why."""
        self._secrets(channel)

    async def create(self, channel: Channel) -> Channel:
        self._check(channel)
        outcome = await self.store.put(channel, create=True, cap=self.max_channels)
        if outcome == "exists":
            raise ChannelExists(f"a channel named {channel.name!r} exists; PUT changes it")
        if outcome == "full":
            raise LimitReached(
                f"at most {self.max_channels} channels; delete one first", "too_many_channels"
            )
        log.info("channel %s created (%s)", channel.name, channel.kind)
        return channel

    async def replace(self, channel: Channel) -> Channel:
        self._check(channel)
        if await self.store.put(channel, create=False, cap=self.max_channels) == "missing":
            raise ChannelNotFound(f"no channel named {channel.name!r}")
        log.info("channel %s changed (%s)", channel.name, channel.kind)
        return channel

    async def delete(self, name: str) -> None:
        if not await self.store.delete(name):
            raise ChannelNotFound(f"no channel named {name!r}")
        log.info("channel %s deleted", name)

    async def test(self, name: str) -> tuple[bool, str]:
        channel = await self.get(name)
        sender = self.make_sender(channel)
        key = f"test-{uuid.uuid4().hex}"
        try:
            async with asyncio.timeout(self.timeout_s):
                await sender.send(probe_message(name, key))
        except TimeoutError:
            return False, f"no answer within {self.timeout_s:g} s"
        except Exception as exc:  # the channel's own answer, for the person who asked
            return False, mask_text(str(exc) or type(exc).__name__, channel.secrets())
        finally:
            await sender.close()
        log.info("channel %s test message sent (key %s)", name, key)
        return True, "ok"

    async def cleared(self, cleared: FiredAlert) -> None:
        """Queue a back-to-normal entry for an alert that re-armed, if it names any named
        channel (the built-in ones send none). Best effort: the engine logs a failure."""
        routes = cleared.routes or ()
        if any(r not in BUILTIN_CHANNELS for r in routes):
            await self.store.add_cleared(cleared, OUTBOX_CAP)
