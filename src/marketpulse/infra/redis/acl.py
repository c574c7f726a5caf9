"""The least a production Redis user of the service needs: the ACL rule ``docs/deploy.md``
quotes, kept here so the doc, the test that runs the service as that user
(``tests/integration/test_redis_acl.py``) and an operator's ``ACL SETUSER`` are one rule.

Guarantee: a user created with ``setuser_command(name, password)`` can run every part of the
service (sessions, analyses, revaluations, alerts and their delivery, the monitor, the quote
cache, pub/sub), on keys and channels under ``mp:`` only (``keys.PREFIX``), and nothing else:
no ``FLUSHALL``, ``CONFIG``, ``KEYS``, ``DEBUG``, ``SHUTDOWN`` or ``ACL``. The command list was
taken from what the code sends (``redis.call`` in every ``.lua`` file, ``call`` and the
pipelines in Python, redis-py's connection set-up), checked by the test against the server's
own count of the commands a full workload ran (``INFO commandstats``).
"""

from __future__ import annotations

from marketpulse.infra.redis import keys

KEY_PATTERN = f"~{keys.PREFIX}:*"
CHANNEL_PATTERN = f"&{keys.PREFIX}:*"

# each command (``container|subcommand`` for one subcommand only), by what needs it
COMMANDS: tuple[str, ...] = (
    # connections: health checks (AUTH and HELLO need no permission; client.py sends no
    # CLIENT SETINFO)
    "ping",
    "select",
    # the topology, asked once per client before its first command (client.py: INFO cluster);
    # on a Redis Cluster the slot map (cluster.py, redis-py's RedisCluster: CLUSTER SLOTS,
    # COMMAND for its key positions) and a redirection mid-migration (ASKING)
    "info",
    "cluster|slots",
    "command",
    "command|getkeys",
    "asking",
    # scripts: every read-modify-write (EVALSHA; EVAL or SCRIPT LOAD when the server lost them)
    "evalsha",
    "eval",
    "script|load",
    # strings, keys and the clock: the market tick, leases, the quote cache, markers
    "get",
    "set",
    "mget",
    "incr",
    "del",
    "exists",
    "expire",
    "pexpire",
    "pttl",
    "time",
    # hashes: sessions, alert definitions and state, delivery records
    "hget",
    "hmget",
    # lists: a named channel's fires held during its quiet hours (alerts/channel_store.py)
    "rpush",
    "lrange",
    "llen",
    "ltrim",
    "hset",
    "hsetnx",
    "hdel",
    "hgetall",
    "hexists",
    "hlen",
    "hincrby",
    # sets and sorted sets: monitored symbols, the session index, volume windows
    "sadd",
    "srem",
    "scard",
    "smembers",
    "sismember",
    "zadd",
    "zrange",
    "zrangebyscore",
    "zrevrangebyscore",
    "zremrangebyrank",
    "zscore",
    "zrem",
    # transactions: the alert store's two-key writes
    "multi",
    "exec",
    # streams: the run stream and the alert outbox (consumer groups), the alert history
    "xadd",
    "xrange",
    "xrevrange",
    "xreadgroup",
    "xack",
    "xautoclaim",
    "xclaim",
    "xpending",
    "xgroup|create",
    "xgroup|delconsumer",
    "xgroup|destroy",
    "xinfo|consumers",
    "xinfo|groups",
    # pub/sub: alert events and quotes for the dashboards (classic), session events (sharded:
    # SPUBLISH inside the session scripts, SSUBSCRIBE/SUNSUBSCRIBE by the event hub)
    "publish",
    "subscribe",
    "unsubscribe",
    "spublish",
    "ssubscribe",
    "sunsubscribe",
)


def rule(password: str = "<password>") -> str:
    """The ACL rule, as ``docs/deploy.md`` prints it (``ACL SETUSER <user> <rule>``)."""
    return " ".join(rule_args(password))


def rule_args(password: str) -> list[str]:
    return [
        "reset",
        "on",
        f">{password}",
        KEY_PATTERN,
        CHANNEL_PATTERN,
        "-@all",
        *(f"+{c}" for c in COMMANDS),
    ]


def setuser_command(user: str, password: str) -> list[str]:
    """``ACL SETUSER`` creating (or resetting) ``user`` with exactly the service's rights."""
    return ["ACL", "SETUSER", user, *rule_args(password)]
