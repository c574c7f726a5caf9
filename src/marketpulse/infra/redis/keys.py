"""Every Redis key name of the service, in one place.

Session keys live in fixed partitions (``infra/redis/partitions.py``): every key of a session,
its event channel, and its partition's run stream and sweep index carry the partition's hash tag,
so each script touches one slot on a Redis Cluster (and the same layout runs on a standalone
server). Nothing else in the code builds a key; user input never reaches a pattern (ids are
validated before they get here, and SCAN patterns are built only from constants).
"""

from __future__ import annotations

from marketpulse.infra.redis import partitions

PREFIX = "mp"


def _p(partition: int) -> str:
    return f"{PREFIX}:{{{partitions.tag(partition)}}}"


def session(session_id: str) -> str:
    """Hash holding the whole state of one session (its partition's tag)."""
    return f"{_p(partitions.partition_of(session_id))}:session:{session_id}"


def session_events(session_id: str) -> str:
    """Sharded pub/sub channel of a session's events, ``SPUBLISH``ed inside the committing
    script (same slot as the session)."""
    return f"{_p(partitions.partition_of(session_id))}:events:{session_id}"


def session_keys(partition: int, session_id: str) -> tuple[str, str]:
    """``session`` and ``session_events`` of a session whose partition is known (the sweep's
    batches: one partition each). Each is a head followed by the id, so
    ``session_keys(partition, "")`` gives the heads (the sweep appends many ids to them)."""
    head = _p(partition)
    return f"{head}:session:{session_id}", f"{head}:events:{session_id}"


def session_index(partition: int) -> str:
    """Sorted set of a partition's session ids (score = creation time) swept by the valuation
    loop."""
    return f"{_p(partition)}:sessions"


def run_stream(partition: int) -> str:
    """Stream of a partition's analysis runs (session id, run id, ticker), added by the script
    that makes a run current (on the session's slot) and consumed by the group ``RUN_GROUP``."""
    return f"{_p(partition)}:runs"


def session_partition(session_id: str) -> int:
    return partitions.partition_of(session_id)


def sharded_channel(channel: str | bytes) -> bool:
    """Is ``channel`` a sharded one (``SSUBSCRIBE``): a session's event channel."""
    raw = channel.decode() if isinstance(channel, bytes) else channel
    return raw.startswith(f"{PREFIX}:{{") and ":events:" in raw


RUN_GROUP = "run-workers"
"""The consumer group of every ``run_stream`` (a group name, not a key)."""

LAYOUT = f"{PREFIX}:layout"
"""The key layout the data is in: ``LAYOUT_VERSION`` once ``sessions/migrate.py`` moved the
keys of the single-stream layout (absent: a fresh database or the old layout)."""

LAYOUT_VERSION = f"partitions:{partitions.COUNT}"

MIGRATE_LEASE = f"{PREFIX}:lease:migrate"

# The layout before the partitions (issue 18), read only by the migration.
OLD_SESSION_INDEX = f"{PREFIX}:sessions"
OLD_RUN_STREAM = f"{PREFIX}:{{runs}}:stream"


def old_session(session_id: str) -> str:
    return f"{PREFIX}:{{{session_id}}}:session"


MARKET_TICK = f"{PREFIX}:market:tick"
"""The market clock: an integer incremented by the valuation leader, once per revaluation."""

MARKET_SNAPSHOT = f"{PREFIX}:market:snapshot"
"""Hash: tick, valued_at and the prices of the last revaluation, for the dashboard."""

VALUATION_LEASE = f"{PREFIX}:lease:valuation"
MONITOR_LEASE = f"{PREFIX}:lease:monitor"


def quote_cache(symbol: str) -> str:
    """Cached quote of a symbol (TTL'd)."""
    return f"{PREFIX}:cache:quote:{symbol}"


def tick_quote_cache(symbol: str, tick: int) -> str:
    """Cached quote of a symbol from a tick-addressed source, valid only at that tick."""
    return f"{PREFIX}:cache:tickquote:{tick}:{symbol}"


def last_good_quote(symbol: str) -> str:
    """Last quote that passed validation (no TTL): served flagged stale when all sources fail."""
    return f"{PREFIX}:lastgood:{symbol}"


SYMBOLS = f"{PREFIX}:monitor:symbols"
"""Set of monitored symbols."""

SYMBOLS_CHOSEN = f"{PREFIX}:monitor:symbols:chosen"
"""Set (to "1") in the same atomic step as any write of ``SYMBOLS`` (the default watchlist, an
add or a remove): from then on an empty ``SYMBOLS`` was emptied on purpose, never re-seeded."""

ALERTS = f"{PREFIX}:alerts"
"""Hash alert_id -> alert definition JSON."""


def alert_state(alert_id: str) -> str:
    """Armed/fired state of one alert (the atomic fire decision lives here)."""
    return f"{PREFIX}:alert:{{{alert_id}}}:state"


ALERT_HISTORY = f"{PREFIX}:alerts:history"
"""Capped stream of fired alerts, appended by the script that decides the fire."""

ALERT_OUTBOX = f"{PREFIX}:{{alerts}}:outbox"
"""Capped stream (``MAXLEN ~``) of fired alerts to deliver: ``alert_transition.lua`` adds the
fire here, and to ``ALERT_HISTORY``, in the step that decides it; each channel consumes it with
its own consumer group (``alert_delivery_group``) and acknowledges after delivering.

That script touches three keys: the alert's state (``alert_state``, hash tag ``{<alert id>}``),
this stream (``{alerts}``) and ``ALERT_HISTORY`` (untagged). On a standalone Redis (what the
service runs on) that is one atomic step. A Redis Cluster would refuse it (CROSSSLOT): it would
need all three on one slot, i.e. the state keys renamed under ``{alerts}`` (a migration: a
missing state key means the alert is gone and deletes it) and the history renamed alike, or a
relay from a per-slot outbox. Not built; the names stay as deployed."""

ALERT_DELIVERY_GROUP = "alert-delivery"
"""Prefix of the consumer group names of ``ALERT_OUTBOX`` (group names, not keys)."""


def alert_delivery_group(channel: str) -> str:
    """The consumer group of one notification channel (``console``, ``websocket``,
    ``webhook``): each channel gets every fire once, across all instances."""
    return f"{ALERT_DELIVERY_GROUP}:{channel}"


def alert_deliveries(fire_id: str) -> str:
    """Hash channel -> delivery time (UTC ISO-8601) of one fire, written with the channel's
    acknowledgement and expiring (``DELIVERIES_TTL_S`` in ``alerts/outbox.py``). Same hash tag
    as ``ALERT_OUTBOX``, so the record and the ack are one script on one slot."""
    return f"{PREFIX}:{{alerts}}:delivered:{fire_id}"


ALERT_EVENTS = f"{PREFIX}:alerts:events"
"""Pub/sub channel of fired alerts."""


def volume_window(symbol: str) -> str:
    """Recent volume observations of a symbol (for volume-spike alerts)."""
    return f"{PREFIX}:volumes:{symbol}"


QUOTE_EVENTS_ALL = f"{PREFIX}:quotes"
"""Pub/sub channel with every fresh quote of the monitor."""


ALERTS_VERSION = f"{PREFIX}:alerts:version"
"""Counter bumped with every change of ``ALERTS``: instances reload their index when it moves."""

MONITOR_CURSOR = f"{PREFIX}:monitor:cursor"
"""Last market tick the monitor evaluated completely (only ever increases)."""


def split_seen(symbol: str) -> str:
    """Hash: the last two observations of a symbol (key, price, day), which a split's jump is
    measured across (``alerts/lua/split_observe.lua``; expires when the symbol goes quiet)."""
    return f"{PREFIX}:split:seen:{symbol}"


def split_applied(symbol: str, ex_date: str) -> str:
    """Marker of a split applied (value: the observation that applied it): set once, by the
    script that re-bases (``alerts/lua/split_apply.lua``), so a split is applied once."""
    return f"{PREFIX}:split:applied:{symbol}:{ex_date}"


# -- portfolio alerts (issue 20; alerts/portfolio_store.py): session keys, the session's hash
# tag, the session's TTL (refreshed by each write from the session key's PTTL), deleted with it


def portfolio_alerts(session_id: str) -> str:
    """Hash alert id -> portfolio alert definition JSON of one session (the session's
    partition tag: its scripts read the session's TTL on the same slot)."""
    return f"{_p(partitions.partition_of(session_id))}:palerts:{session_id}"


def portfolio_alert_state(session_id: str, alert_id: str) -> str:
    """Armed/fired state of one portfolio alert (the hash ``alert_transition.lua`` decides on,
    as ``alert_state`` for a price alert)."""
    return f"{_p(partitions.partition_of(session_id))}:palert:{session_id}:{alert_id}:state"


def portfolio_track(session_id: str) -> str:
    """Hash: the session's return index, its peak, the day's reference and the last valuation
    (``alerts/portfolio_rules.py`` ``Track``)."""
    return f"{_p(partitions.partition_of(session_id))}:ptrack:{session_id}"


CHANNELS = f"{PREFIX}:{{alerts}}:channels"
"""Hash channel name -> the channel's row JSON (``alerts/channels.py``): the named delivery
channels (e-mail, Apprise, webhook). Same hash tag as ``ALERT_OUTBOX``: the script that creates a
row creates its consumer group on the outbox in the same step."""

CHANNELS_VERSION = f"{PREFIX}:{{alerts}}:channels:version"
"""Counter bumped with every change of ``CHANNELS``: instances restart their channel loops."""


def channel_held(name: str) -> str:
    """List of the fire JSONs one channel holds during its quiet hours (capped), released as
    one digest or one message each when they end."""
    return f"{PREFIX}:{{alerts}}:channel:{name}:held"


def channel_held_info(name: str) -> str:
    """Hash ``count`` (fires held, also past the list's cap) and ``since`` (the first one's
    time) of one channel's held fires."""
    return f"{PREFIX}:{{alerts}}:channel:{name}:heldinfo"


def channel_release_lock(name: str) -> str:
    """The lock (``SET NX PX``) of the instance releasing one channel's held fires."""
    return f"{PREFIX}:{{alerts}}:channel:{name}:releasing"
