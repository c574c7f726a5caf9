"""The production ACL rule (``infra/redis/acl.py``, quoted by ``docs/deploy.md``) grants every
command a Lua script of ours calls: a script added or changed cannot need a command the rule
refuses without this test saying which (``tests/integration/test_redis_acl.py`` runs a full
workload as that user; this covers the script paths a workload may not reach)."""

from __future__ import annotations

import re
from pathlib import Path

from marketpulse.infra.redis import acl

SRC = Path(__file__).resolve().parents[2] / "src" / "marketpulse"
CALL = re.compile(r"redis\.p?call\(\s*['\"](\w+)['\"](?:\s*,\s*['\"](\w+)['\"])?")
CONTAINERS = {"xinfo", "xgroup", "script", "client", "config", "object", "acl"}


def test_every_command_a_script_calls_is_granted() -> None:
    called: set[str] = set()
    for lua in SRC.rglob("*.lua"):
        for command, sub in CALL.findall(lua.read_text()):
            name = command.lower()
            called.add(f"{name}|{sub.lower()}" if name in CONTAINERS and sub else name)
    assert len(called) > 20  # the scripts were found
    assert sorted(called - set(acl.COMMANDS)) == []


def test_the_rule_confines_keys_and_channels_and_refuses_the_rest() -> None:
    words = acl.rule("pw").split()
    assert words[:6] == ["reset", "on", ">pw", "~mp:*", "&mp:*", "-@all"]
    granted = {w[1:] for w in words[6:]}
    assert all(w.startswith("+") for w in words[6:])
    assert not granted & {"flushall", "flushdb", "keys", "scan", "config", "debug", "acl"}
