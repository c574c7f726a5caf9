"""The fixed partitions (infra/redis/partitions.py): Redis Cluster's slot function computed
right, the partitions' hash tags spread evenly over the slots, and every key a session script
touches on one slot."""

from __future__ import annotations

import zlib
from collections import Counter

import pytest

from marketpulse.infra.redis import keys, partitions
from marketpulse.infra.redis.partitions import SLOTS, crc16, key_slot, partition_of, tag


def test_crc16_and_key_slot_are_redis_clusters() -> None:
    assert crc16(b"123456789") == 0x31C3  # the CRC16/XMODEM check value
    assert key_slot("foo") == 12182  # CLUSTER KEYSLOT foo
    assert key_slot("{user1000}.following") == key_slot("{user1000}.followers")
    assert key_slot("{user1000}.following") == key_slot("user1000")
    assert key_slot("foo{}{bar}") == crc16(b"foo{}{bar}") % SLOTS  # an empty tag: the whole key
    assert key_slot("foo{{bar}}zap") == key_slot("{bar")  # the first { to the first } after it
    assert key_slot(b"foo") == key_slot("foo")


def test_each_partitions_tag_lands_in_its_own_share_of_the_slots() -> None:
    count = partitions.COUNT
    slots = [key_slot(tag(p)) for p in partitions.ALL]
    for p, slot in enumerate(slots):
        assert p * SLOTS // count <= slot < (p + 1) * SLOTS // count
    # so no two share a slot, and a gap between neighbours is under two shares
    assert len(set(slots)) == count
    gaps = [b - a for a, b in zip(slots, [*slots[1:], slots[0] + SLOTS], strict=True)]
    assert max(gaps) < 2 * SLOTS / count


@pytest.mark.parametrize("primaries", [2, 3, 4, 5])
def test_the_partitions_spread_over_primaries_as_evenly_as_they_can(primaries: int) -> None:
    """Slots split evenly over the primaries (what ``redis-cli --cluster create`` does): each
    primary gets ``COUNT / primaries`` partitions, give or take one."""
    per_node = Counter(key_slot(tag(p)) * primaries // SLOTS for p in partitions.ALL)
    assert len(per_node) == primaries
    assert max(per_node.values()) - min(per_node.values()) <= 1


def test_a_sessions_partition_is_stable_and_sessions_spread_evenly() -> None:
    assert partition_of("user-1") == partition_of("user-1")
    assert [partition_of(f"user-{i}") for i in range(4)] == [
        zlib.crc32(f"user-{i}".encode()) % partitions.COUNT for i in range(4)
    ]
    counts = Counter(partition_of(f"user-{i}") for i in range(16_000))
    assert len(counts) == partitions.COUNT
    assert max(counts.values()) < 1.1 * 1_000 and min(counts.values()) > 0.9 * 1_000


@pytest.mark.parametrize("sid", ["a", "user-123", "s", "x" * 64])
def test_every_key_a_session_script_touches_is_on_one_slot(sid: str) -> None:
    p = partition_of(sid)
    slots = {
        key_slot(keys.session(sid)),
        key_slot(keys.session_events(sid)),
        key_slot(keys.run_stream(p)),
        key_slot(keys.session_index(p)),
    }
    assert slots == {key_slot(tag(p))}
    assert keys.sharded_channel(keys.session_events(sid))
    assert not keys.sharded_channel(keys.ALERT_EVENTS)
    assert not keys.sharded_channel(keys.QUOTE_EVENTS_ALL)


def test_the_new_keys_never_collide_with_the_old_layouts() -> None:
    for sid in ("a", "0.13", "runs"):
        assert keys.session(sid) != keys.old_session(sid)
    assert keys.OLD_SESSION_INDEX not in {keys.session_index(p) for p in partitions.ALL}
    assert keys.OLD_RUN_STREAM not in {keys.run_stream(p) for p in partitions.ALL}


def test_keys_grouped_by_slot() -> None:
    streams = [keys.run_stream(p) for p in partitions.ALL]
    assert partitions.by_slot(streams) == [[s] for s in streams]
    assert partitions.by_slot(["{a}1", "{b}1", "{a}2"]) == [["{a}1", "{a}2"], ["{b}1"]]
