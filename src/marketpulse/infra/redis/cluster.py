"""Redis Cluster: the slot of a key, the slot map, and the pipelined connections routed by it.

Choosing the cluster needs nothing from the user: ``RedisClient`` asks the server named by
``MARKETPULSE_REDIS_URL`` (any node) for ``INFO cluster`` before its first command, and on
``cluster_enabled:1`` sends everything through here (``client.py``).

``key_slot(key)``: CRC16 (XMODEM, ``binascii.crc_hqx``, C) of the key, or of its hash tag (the
text between the first ``{`` and the next ``}`` when not empty), modulo 16384, as Redis does.

``ClusterMux``: the mux (``mux.py``) once per primary, a command routed by the hash slot of its
first key (a script's declared keys must share one slot: ``CrossSlotKeys`` names them
otherwise, before anything is sent). The slot map comes from ``CLUSTER SLOTS`` (asked of every
known node at once, the first answer wins) and is kept current by the replies:

- ``MOVED <slot> <node>``: the slot is patched at once, the command resent there, and the whole
  map refreshed in the background (one refresh at a time);
- ``ASK <slot> <node>``: ``ASKING`` then the command on that node's connection, back to back
  (one write), the map untouched (the slot is only migrating);
- ``TRYAGAIN`` (a multi-key command mid-migration), ``CLUSTERDOWN``, ``LOADING``,
  ``MASTERDOWN``: resent after a bounded backoff (``infra/retry.py``), the map refreshed;
- ``NOSCRIPT``: each node has its own script cache (a promoted replica lacks what was loaded by
  ``EVAL`` on its primary): ``EVAL`` on that node, which caches it there;
- a lost, refused or silent connection (``timeout_s`` without a reply, the mux's watchdog):
  the map refreshed, the command resent after a backoff, ``retries`` times; then
  ``RedisUnavailable``. A call therefore ends within about ``(retries + 1) * (timeout_s +
  probe_s)``: a frozen (SIGSTOPped) primary makes calls time out, never hang.
Redirections are bounded too (``MAX_REDIRECTS``): a map that keeps moving fails the call.

The topology, for the pub/sub hub (one ``SSUBSCRIBE`` connection per primary) and anything
else that must follow the primaries (``RedisClient.topology()`` returns one of these):

- ``cluster``: True on a cluster, False for one server (``SingleNode``, the same API);
- ``node_for(key_or_channel) -> Endpoint``: the primary serving the slot of a key or a sharded
  channel, with the credentials and TLS of the URL (``await``: the map is loaded if needed);
- ``primaries() -> list[Endpoint]``: every primary of the current map;
- ``epoch``: a number that changes whenever the map does (a slot moved, a failover);
- ``await changed(epoch)``: returns the new epoch once the map differs from ``epoch`` (at
  once if it already does; never for one server);
- ``await refresh()``: ask for the map again now (a subscriber's connection to a node was
  lost, or a ``MOVED`` answered an ``SSUBSCRIBE``).

Not thread-safe; one per event loop.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import dataclasses
import random
from collections.abc import Sequence
from typing import Any, Protocol

import hiredis

from marketpulse.errors import RedisUnavailable
from marketpulse.infra.redis.endpoint import Arg, Endpoint, pack
from marketpulse.infra.redis.mux import BULK_WINDOW, RedisMux
from marketpulse.infra.retry import Backoff

SLOTS = 16384
MAX_REDIRECTS = 16  # MOVED/ASK hops of one call
RETRY_BACKOFF = Backoff(base_s=0.05, cap_s=1.0)  # TRYAGAIN, CLUSTERDOWN, a lost node
PROBE_S = 2.0  # how long one node may take to answer CLUSTER SLOTS

Addr = tuple[str, int]
_AGAIN: Any = object()  # ``_direct``: take the whole procedure
_BUSY = ("TRYAGAIN", "CLUSTERDOWN", "LOADING", "MASTERDOWN")
# commands that name no key: any primary answers them (SCRIPT LOAD: every primary must)
_KEYLESS = frozenset({b"PING", b"INFO", b"TIME", b"SCRIPT", b"ECHO", b"CLUSTER", b"DBSIZE"})


class CrossSlotKeys(ValueError):
    """The keys of one script or transaction hash to different slots: a bug in a key layout
    (the cluster would refuse it; a standalone Redis would not notice)."""


def key_slot(key: Arg) -> int:
    """The hash slot of ``key`` (its hash tag's, when it has one)."""
    k = key if isinstance(key, bytes) else str(key).encode()
    start = k.find(b"{")
    if start >= 0:
        end = k.find(b"}", start + 1)
        if end > start + 1:
            k = k[start + 1 : end]
    return binascii.crc_hqx(k, 0) & (SLOTS - 1)


def keys_slot(keys: Sequence[Arg], what: str = "script") -> int | None:
    """The one slot of ``keys`` (None for no key); ``CrossSlotKeys`` naming them otherwise."""
    if not keys:
        return None
    slot = key_slot(keys[0])
    for k in keys[1:]:
        if key_slot(k) != slot:
            named = ", ".join(f"{k!s} (slot {key_slot(k)})" for k in keys)
            raise CrossSlotKeys(f"the keys of one {what} must share a hash slot: {named}")
    return slot


def _word(arg: Arg) -> bytes:
    return (arg if isinstance(arg, bytes) else str(arg).encode()).upper()


def command_slot(args: Sequence[Arg]) -> int | None:
    """The slot of a command's first key; None for a command without keys."""
    name = _word(args[0])
    if name.split(b" ", 1)[0] in _KEYLESS or len(args) < 2:
        return None
    if name in (b"EVAL", b"EVALSHA", b"EVAL_RO", b"EVALSHA_RO", b"FCALL", b"FCALL_RO"):
        n = int(args[2])
        return keys_slot(list(args[3 : 3 + n])) if n else None
    if name in (b"XREAD", b"XREADGROUP"):
        words = [_word(a) for a in args]
        return key_slot(args[words.index(b"STREAMS") + 1])
    if b" " in name or name in (b"XGROUP", b"XINFO", b"OBJECT", b"MEMORY"):
        # a container command ("XGROUP CREATE key ..." as one word, or its words apart)
        return key_slot(args[1] if b" " in name else args[2])
    return key_slot(args[1])


class Topology(Protocol):
    """What follows the primaries needs (see the module docstring)."""

    @property
    def cluster(self) -> bool: ...

    @property
    def epoch(self) -> int: ...

    async def node_for(self, key: Arg) -> Endpoint: ...

    def primaries(self) -> list[Endpoint]: ...

    async def changed(self, epoch: int) -> int: ...

    async def refresh(self) -> None: ...


class SingleNode:
    """The topology of one Redis server: one node, which never changes."""

    cluster = False
    epoch = 0

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    async def node_for(self, key: Arg) -> Endpoint:
        return self.endpoint

    def primaries(self) -> list[Endpoint]:
        return [self.endpoint]

    async def changed(self, epoch: int) -> int:
        await asyncio.get_running_loop().create_future()  # never: cancel it to stop waiting
        raise AssertionError("unreachable")

    async def refresh(self) -> None:
        return None


class ClusterMux:
    """Pipelined connections to every primary, routed by slot. ``aclose()`` it when done."""

    cluster = True

    def __init__(
        self,
        seed: Endpoint,
        *,
        timeout_s: float = 10.0,
        retries: int = 3,
        probe_s: float = PROBE_S,
    ) -> None:
        self.seed = seed
        self.url = seed.display()  # named by its errors, never the credentials
        self.timeout_s = timeout_s
        self.retries = retries
        self.probe_s = probe_s
        self.epoch = 0
        self._slots: list[Addr | None] = [None] * SLOTS
        self._known: list[Addr] = [(seed.host, seed.port)]  # every node of the last map
        # a connection per (primary, lane): "hot" for calls, "bulk" for pipeline batches.
        # Bound: the primaries of the map (twice); removal: a node no longer primary, on refresh
        self._conns: dict[tuple[Addr, str], RedisMux] = {}
        self._refreshing: asyncio.Task[None] | None = None
        self._next: asyncio.Future[int] | None = None
        self._closed = False

    # -- the map -----------------------------------------------------------------------------

    def endpoint(self, addr: Addr) -> Endpoint:
        return dataclasses.replace(self.seed, host=addr[0], port=addr[1])

    @property
    def nodes(self) -> list[Addr]:
        """Every node (primary or replica) of the last map, and the seed."""
        return list(dict.fromkeys([*self._known, (self.seed.host, self.seed.port)]))

    def primaries(self) -> list[Endpoint]:
        return [self.endpoint(a) for a in sorted({a for a in self._slots if a is not None})]

    async def node_for(self, key: Arg) -> Endpoint:
        slot = key_slot(key)
        if self._slots[slot] is None:
            await self.refresh()
        addr = self._slots[slot]
        if addr is None:
            raise RedisUnavailable(f"redis cluster: no node serves slot {slot}", url=self.url)
        return self.endpoint(addr)

    async def changed(self, epoch: int) -> int:
        if self.epoch != epoch:
            return self.epoch
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        return await asyncio.shield(self._next)

    def _bump(self) -> None:
        self.epoch += 1
        nxt, self._next = self._next, None
        if nxt is not None and not nxt.done():
            nxt.set_result(self.epoch)

    async def refresh(self) -> None:
        """Load the slot map now (one load at a time: a caller joins the one running).
        Raises ``RedisUnavailable`` when no known node answers."""
        task = self._refreshing
        if task is None or task.done():
            task = self._refreshing = asyncio.ensure_future(self._load())
        await asyncio.shield(task)

    def _refresh_soon(self) -> None:
        """A refresh in the background (after a MOVED): its failure is the next call's."""
        if self._closed or (self._refreshing is not None and not self._refreshing.done()):
            return
        self._refreshing = asyncio.ensure_future(self._load())
        self._refreshing.add_done_callback(_quiet)

    async def _ask_slots(self, addr: Addr) -> Any:
        probe = RedisMux(self.endpoint(addr), timeout_s=self.probe_s, retries=0)
        try:
            async with asyncio.timeout(self.probe_s):
                return await probe.execute("CLUSTER", "SLOTS")
        finally:
            await probe.aclose()

    async def _load(self) -> None:
        tasks = [asyncio.ensure_future(self._ask_slots(a)) for a in self.nodes]
        last: BaseException | None = None
        try:
            for next_done in asyncio.as_completed(tasks):
                try:
                    reply = await next_done
                except (RedisUnavailable, OSError, TimeoutError) as exc:
                    last = exc
                    continue
                if reply:  # a node just restarted answers an empty map until it joins
                    self._apply(reply)
                    return
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        raise RedisUnavailable(
            f"redis cluster: no node answered CLUSTER SLOTS ({last})", url=self.url
        ) from last

    def _apply(self, reply: list[Any]) -> None:
        slots: list[Addr | None] = [None] * SLOTS
        known: list[Addr] = []
        for start, end, *nodes in reply:
            addrs = [(_host(n[0]) or self.seed.host, int(n[1])) for n in nodes]
            slots[int(start) : int(end) + 1] = [addrs[0]] * (int(end) - int(start) + 1)
            known += addrs
        self._known = list(dict.fromkeys(known))
        if slots != self._slots:
            self._slots = slots
            self._bump()
        primaries = set(slots)
        for key in [k for k in self._conns if k[0] not in primaries]:
            stale = self._conns.pop(key)
            stale.abort()  # calls still on it fail over to the node that now serves them

    # -- connections -------------------------------------------------------------------------

    def _conn(self, addr: Addr, lane: str = "hot") -> RedisMux:
        conn = self._conns.get((addr, lane))
        if conn is None or conn.closed:
            window = BULK_WINDOW if lane == "bulk" else None  # paced calls: see mux.py
            conn = RedisMux(self.endpoint(addr), timeout_s=self.timeout_s, retries=0, window=window)
            self._conns[(addr, lane)] = conn
        return conn

    async def aclose(self) -> None:
        self._closed = True
        task, self._refreshing = self._refreshing, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        conns, self._conns = self._conns, {}
        for conn in conns.values():
            await conn.aclose()
        if self._next is not None and not self._next.done():
            self._next.cancel()

    # -- commands ----------------------------------------------------------------------------

    async def _addr(self, slot: int | None) -> Addr:
        if slot is None:  # no key: any primary
            served = [a for a in self._slots[:: SLOTS // 16] if a is not None]
            if served:
                return random.choice(served)
            slot = 0
        addr = self._slots[slot]
        if addr is None:
            await self.refresh()
            addr = self._slots[slot]
            if addr is None:
                raise RedisUnavailable(f"redis cluster: no node serves slot {slot}", url=self.url)
        return addr

    async def route(
        self,
        slot: int | None,
        packed: bytes,
        *,
        eval_packed: tuple[Arg, ...] | None = None,
        lane: str = "hot",
        lost: RedisUnavailable | None = None,
        paced: bool = False,
    ) -> Any:
        """The reply to ``packed`` from the primary of ``slot`` (an error reply is returned,
        not raised), through redirections, busy answers and lost nodes (module docstring).
        ``eval_packed``: the EVAL to send instead when the node answers NOSCRIPT (unpacked)."""
        call = _Call(slot, packed, eval_packed)
        if lost is not None:  # the first attempt was ``_direct``'s
            await self._after_loss(call, lost)
        while True:
            addr = call.ask or await self._addr(slot)
            try:
                reply = await self._conn(addr, lane).send(
                    call.packed, asking=call.ask is not None, paced=paced
                )
            except RedisUnavailable as exc:
                await self._after_loss(call, exc)
                continue
            call.ask = None
            if type(reply) is not hiredis.ReplyError or not await self._again(call, str(reply)):
                return reply

    async def _after_loss(self, call: _Call, exc: RedisUnavailable) -> None:
        """A node lost, refused or silent: raise ``exc`` past the retries, else back off and
        reload the map before the next attempt."""
        call.failures += 1
        if call.failures > self.retries or self._closed:
            raise exc
        await asyncio.sleep(RETRY_BACKOFF.delay(call.failures))
        with contextlib.suppress(RedisUnavailable):  # the next attempt says
            await self.refresh()

    async def _again(self, call: _Call, text: str) -> bool:
        """Whether an error reply is one to resend on (``call`` updated for it)."""
        if text.startswith(("MOVED ", "ASK ")):
            call.hops += 1
            kind, where = _redirect(text, self.seed.host)
            if call.hops > MAX_REDIRECTS or (kind == "MOVED" and call.slot is None):
                return False  # a map that keeps moving; a keyless command is never moved
            if kind == "ASK":
                call.ask = where
            else:
                if self._slots[call.slot] != where:  # type: ignore[index]
                    self._slots[call.slot] = where  # type: ignore[index]
                    self._bump()
                self._refresh_soon()
            return True
        if text.startswith(_BUSY):
            call.failures += 1
            if call.failures > self.retries:
                return False
            await asyncio.sleep(RETRY_BACKOFF.delay(call.failures))
            if not text.startswith("TRYAGAIN"):
                with contextlib.suppress(RedisUnavailable):
                    await self.refresh()
            return True
        if call.eval_packed is not None and text.startswith("NOSCRIPT"):
            call.packed, call.eval_packed = pack(call.eval_packed), None
            return True
        return False

    async def _direct(self, slot: int | None, packed: bytes) -> Any:
        """The common case in one hop: the slot's primary has a live connection; ``_AGAIN``
        when anything is off (no map yet, no connection, any error reply), for ``route`` to
        resend with the whole procedure (a script resent is idempotent); the
        ``RedisUnavailable`` of a lost connection (its first failure, for ``route``)."""
        if slot is None:
            return _AGAIN
        conn = self._conns.get((self._slots[slot], "hot"))  # type: ignore[arg-type]
        if conn is None or conn.closed:
            return _AGAIN
        try:
            reply = await conn.send(packed)
        except RedisUnavailable as exc:
            return exc
        return _AGAIN if type(reply) is hiredis.ReplyError else reply

    async def execute(self, *args: Arg) -> Any:
        """One command on the primary of its first key's slot (any primary for none); its
        reply. Raises ``RedisUnavailable`` on an error reply or when the cluster fails."""
        slot = command_slot(args)
        packed = pack(args)
        reply = await self._direct(slot, packed)
        if reply is _AGAIN or type(reply) is RedisUnavailable:
            lost = None if reply is _AGAIN else reply
            reply = await self.route(slot, packed, lost=lost)
        if type(reply) is hiredis.ReplyError:
            raise RedisUnavailable(f"redis {args[0]!s}: {reply}", url=self.url) from reply
        return reply

    async def evalsha(self, sha: str, source: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """A script on the primary of its keys' slot (``CrossSlotKeys`` if they span slots)."""
        n = len(keys)
        slot = keys_slot(keys)
        packed = pack(("EVALSHA", sha, n, *keys, *args))
        reply = await self._direct(slot, packed)
        if reply is _AGAIN or type(reply) is RedisUnavailable:
            lost = None if reply is _AGAIN else reply
            evaled = ("EVAL", source, n, *keys, *args)
            reply = await self.route(slot, packed, eval_packed=evaled, lost=lost)
        if type(reply) is hiredis.ReplyError:
            raise RedisUnavailable(f"redis script {sha[:12]}: {reply}", url=self.url) from reply
        return reply

    async def execute_many(
        self, commands: Sequence[Sequence[Arg]], *, paced: bool = False
    ) -> list[Any]:
        """The bulk path: each command on its slot's primary (a keyless one on every primary,
        the first reply kept: ``SCRIPT LOAD`` must reach them all, and is answered before the
        keyed commands are sent), all at once on one bulk connection per primary, replies in
        order (``paced``: at most ``BULK_WINDOW`` of them in flight on each primary, see
        ``mux.py``). An error reply comes back in the list as a ``RedisUnavailable``; a cluster
        that fails raises it."""
        if not any(self._slots):
            await self.refresh()

        async def one(command: Sequence[Arg]) -> Any:
            slot = command_slot(command)
            packed = pack(tuple(command))
            if slot is None:
                every = [
                    self._conn(a, "bulk").send(packed)
                    for a in sorted({a for a in self._slots if a is not None})
                ]
                replies = await asyncio.gather(*every)
                bad = [r for r in replies if type(r) is hiredis.ReplyError]
                return bad[0] if bad else replies[0]
            return await self.route(slot, packed, lane="bulk", paced=paced)

        # a keyless command (SCRIPT LOAD) is in place on every primary before the keyed ones
        # are sent: gathered together, a keyed command could reach its node first (NOSCRIPT)
        keyless = {i for i, c in enumerate(commands) if command_slot(c) is None}
        got: list[Any] = [None] * len(commands)
        for group in (sorted(keyless), [i for i in range(len(commands)) if i not in keyless]):
            if not group:
                continue
            replies = await asyncio.gather(
                *(one(commands[i]) for i in group), return_exceptions=True
            )
            for i, reply in zip(group, replies, strict=True):
                got[i] = reply
        for r in got:
            if isinstance(r, BaseException) and type(r) is not hiredis.ReplyError:
                raise r  # a failure (an error reply is a reply, an exception object too)
        return [
            RedisUnavailable(f"redis: {r}", url=self.url) if type(r) is hiredis.ReplyError else r
            for r in got
        ]


@dataclasses.dataclass(slots=True)
class _Call:
    """One routed call's state across its attempts."""

    slot: int | None
    packed: bytes
    eval_packed: tuple[Arg, ...] | None  # packed only when needed: a script's whole text
    ask: Addr | None = None
    hops: int = 0
    failures: int = 0


def _host(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _redirect(text: str, default_host: str) -> tuple[str, Addr]:
    """``MOVED 3999 127.0.0.1:6381`` → ("MOVED", ("127.0.0.1", 6381)); an empty host is the
    one the client reached the cluster by."""
    kind, _, where = text.split(" ", 2)
    host, _, port = where.strip().rpartition(":")
    return kind, (host or default_host, int(port))


def _quiet(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a background refresh's failure is the next call's
