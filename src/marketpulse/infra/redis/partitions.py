"""Fixed partitions of the session keyspace: the layout that keeps every script on one slot.

A session belongs to one of ``COUNT`` partitions (a stable hash of its id, ``partition_of``).
Each partition has a hash tag (``tag``) chosen so that the ``COUNT`` tags land on slots spread
evenly over Redis Cluster's 16,384: tag ``i`` hashes into the ``i``-th of ``COUNT`` equal slot
ranges. Every key of a session, and its partition's run stream, sweep index and its sessions'
event channels, carry the partition's tag (``infra/redis/keys.py``), so a script that changes a
session and queues its run, or a sweep of one partition, touches one slot, on a standalone
server and on a cluster alike (one code path).

Pure: the slot function is Redis Cluster's (CRC16/XMODEM of the key, or of its first non-empty
``{...}`` hash tag, modulo 16,384), computed here.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Iterable
from functools import cache

SLOTS = 16_384
COUNT = 16
"""The number of partitions. Growing it moves sessions between partitions: a migration like
``sessions/migrate.py``'s, not a setting to change on a running deployment."""


def _crc16_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return tuple(table)


_TABLE = _crc16_table()


def crc16(data: bytes) -> int:
    """CRC16/XMODEM (polynomial 0x1021, initial 0): the checksum of Redis Cluster's slots."""
    crc = 0
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _TABLE[((crc >> 8) ^ b) & 0xFF]
    return crc


def key_slot(key: str | bytes) -> int:
    """The cluster slot of ``key``: its hash tag's, if it has a non-empty one."""
    raw = key.encode() if isinstance(key, str) else key
    start = raw.find(b"{")
    if start >= 0:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            raw = raw[start + 1 : end]
    return crc16(raw) % SLOTS


@cache
def tag(partition: int, count: int = COUNT) -> str:
    """The hash tag of ``partition``: the first ``"<partition>.<n>"`` (n = 0, 1, ...) whose slot
    falls in the partition's share of the slots, ``[partition, partition + 1) * SLOTS / count``.
    Deterministic: the same tags on every process and every run."""
    if not 0 <= partition < count:
        raise ValueError(f"partition {partition} outside 0..{count - 1}")
    lo, hi = partition * SLOTS // count, (partition + 1) * SLOTS // count
    n = 0
    while True:
        candidate = f"{partition}.{n}"
        if lo <= key_slot(candidate) < hi:
            return candidate
        n += 1


def partition_of(session_id: str, count: int = COUNT) -> int:
    """The partition of a session: CRC32 of its id modulo ``count`` (stable across processes,
    unlike ``hash()``)."""
    return zlib.crc32(session_id.encode()) % count


def by_slot(keys: Iterable[str]) -> list[list[str]]:
    """``keys`` grouped by cluster slot, in first-seen order: each group may go in one
    multi-key command on a cluster."""
    groups: defaultdict[int, list[str]] = defaultdict(list)
    for k in keys:
        groups[key_slot(k)].append(k)
    return list(groups.values())


ALL = range(COUNT)
"""Every partition, in order."""
