"""The hash slot of a key, as Redis Cluster computes it (CRC16/XMODEM mod 16384, hash tags):
the values are Redis's own (``CLUSTER KEYSLOT``, and the cluster specification's examples)."""

from __future__ import annotations

import pytest

from marketpulse.infra.redis.cluster import CrossSlotKeys, command_slot, key_slot, keys_slot


def test_the_slot_is_crc16_xmodem_of_the_key_mod_16384() -> None:
    assert key_slot("123456789") == 0x31C3 % 16384  # the CRC16/XMODEM check value
    assert key_slot("foo") == 12182
    assert key_slot(b"foo") == 12182


def test_a_hash_tag_is_hashed_instead_of_the_key() -> None:
    assert key_slot("{user1000}.following") == key_slot("{user1000}.followers")
    assert key_slot("{user1000}.following") == key_slot("user1000")
    assert key_slot("foo{}{bar}") == key_slot(b"foo{}{bar}")  # empty tag: whole key
    assert key_slot("foo{}{bar}") != key_slot("bar")
    assert key_slot("foo{{bar}}zap") == key_slot("{bar")  # up to the first } after the first {
    assert key_slot("foo{bar}{zap}") == key_slot("bar")


def test_keys_of_one_script_must_share_a_slot_and_the_error_names_them() -> None:
    assert keys_slot(["mp:{a}:session", "mp:{a}:events"]) == key_slot("a")
    assert keys_slot([]) is None
    with pytest.raises(CrossSlotKeys) as err:
        keys_slot(["mp:{a}:session", "mp:{runs}:stream"])
    assert "mp:{a}:session" in str(err.value) and "mp:{runs}:stream" in str(err.value)


def test_a_command_is_routed_by_its_first_key() -> None:
    assert command_slot(("GET", "foo")) == 12182
    assert command_slot(("EVALSHA", "x" * 40, 2, "{t}a", "{t}b", "arg")) == key_slot("t")
    assert command_slot(("EVALSHA", "x" * 40, 0, "arg")) is None
    assert command_slot(("XGROUP CREATE", "foo", "g", "$")) == 12182
    assert command_slot(("XREADGROUP", "GROUP", "g", "c", "STREAMS", "foo", ">")) == 12182
    assert command_slot(("SCRIPT", "LOAD", "return 1")) is None
    assert command_slot(("PING",)) is None
