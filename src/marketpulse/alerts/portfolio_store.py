"""Where portfolio alerts live: per session, under the session's hash tag, with its TTL.

Keys (``infra/redis/keys.py``): ``portfolio_alerts(sid)`` (hash id -> definition JSON),
``portfolio_alert_state(sid, id)`` (the armed/fired hash ``alert_transition.lua`` decides on,
exactly as a price alert's) and ``portfolio_track(sid)`` (the return index, ``Track``). Every
write sets them to the session key's remaining TTL (``portfolio_alert_put.lua``,
``portfolio_track.lua``), so they expire with the session; a track write that finds the session
gone deletes them; ``drop`` deletes them with a deleted session.

A fire is decided by ``alert_transition.lua`` through ``RedisAlertStore``'s script, so it is
queued on the same outbox and appended to the same history in the step that decides it.
Every method raises ``RedisUnavailable`` when Redis fails.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from marketpulse.alerts.event import FiredAlert
from marketpulse.alerts.portfolio_rules import PortfolioAlert, Track
from marketpulse.alerts.rules import AlertState, Outcome
from marketpulse.alerts.store import HISTORY_CAP, OUTBOX_CAP, SCRIPTS, as_text, read_states
from marketpulse.infra.redis import keys
from marketpulse.infra.redis.client import RedisClient

MAX_PER_SESSION = 20


def _track(raw: dict[bytes, bytes]) -> Track | None:
    if not raw or b"tick" not in raw:
        return None
    f = {as_text(k): as_text(v) for k, v in raw.items()}
    return Track(
        tick=int(f["tick"]),
        day=f["day"],
        index=float(f["index"]),
        peak=float(f["peak"]),
        day_index=float(f["day_index"]),
        quantities=json.loads(f["quantities"]),
        units=json.loads(f["units"]),
        total=float(f["total"]),
        peak_units=json.loads(f["peak_units"]),
        day_units=json.loads(f["day_units"]),
    )


def _fields(t: Track) -> list[str]:
    return [
        "day", t.day, "index", repr(t.index), "peak", repr(t.peak),
        "day_index", repr(t.day_index), "quantities", json.dumps(t.quantities),
        "units", json.dumps(t.units), "total", repr(t.total),
        "peak_units", json.dumps(t.peak_units), "day_units", json.dumps(t.day_units),
    ]  # fmt: skip


class PortfolioAlertStore:
    def __init__(self, redis: RedisClient, *, history_cap: int = HISTORY_CAP) -> None:
        self.redis = redis
        self._cap = history_cap
        self._put = redis.script(SCRIPTS, "portfolio_alert_put")
        self._track = redis.script(SCRIPTS, "portfolio_track")
        self._transition = redis.script(SCRIPTS, "alert_transition")

    async def put(self, session_id: str, alert: PortfolioAlert, *, reset: bool) -> str:
        """'ok' | 'full' | 'gone' (``portfolio_alert_put.lua``)."""
        k = [
            keys.session(session_id),
            keys.portfolio_alerts(session_id),
            keys.portfolio_alert_state(session_id, alert.id),
            keys.portfolio_track(session_id),
        ]
        args = [alert.id, alert.model_dump_json(), MAX_PER_SESSION, "1" if reset else "0"]
        return as_text(await self._put(k, args))

    async def remove(self, session_id: str, alert_id: str) -> bool:
        removed, _ = await self.redis.pipeline(
            [
                ("HDEL", keys.portfolio_alerts(session_id), alert_id),
                ("DEL", keys.portfolio_alert_state(session_id, alert_id)),
            ],
            transaction=True,
        )
        return bool(removed)

    async def alerts(self, session_id: str) -> list[PortfolioAlert]:
        raw = await self.redis.call("HGETALL", keys.portfolio_alerts(session_id))
        return sorted(
            (PortfolioAlert.model_validate_json(v) for v in (raw or {}).values()),
            key=lambda a: a.id,
        )

    async def have_alerts(self, session_ids: Sequence[str]) -> list[bool]:
        """Whether each session has a portfolio alert: one ``EXISTS`` each, on the bulk path
        (the sweep asks for every session it values)."""
        if not session_ids:
            return []
        replies = await self.redis.pipeline_packed(
            [("EXISTS", keys.portfolio_alerts(s)) for s in session_ids]
        )
        return [r == 1 for r in replies]

    async def alerts_of(self, session_ids: Sequence[str]) -> list[list[PortfolioAlert]]:
        """Each session's alerts, in one round trip (most sessions have none)."""
        if not session_ids:
            return []
        rows = await self.redis.pipeline(
            [("HGETALL", keys.portfolio_alerts(s)) for s in session_ids]
        )
        return [[PortfolioAlert.model_validate_json(v) for v in (r or {}).values()] for r in rows]

    async def tracks(self, session_ids: Sequence[str]) -> list[Track | None]:
        if not session_ids:
            return []
        rows = await self.redis.pipeline(
            [("HGETALL", keys.portfolio_track(s)) for s in session_ids]
        )
        return [_track(r) for r in rows]

    async def save_track(
        self, session_id: str, read_tick: int | None, track: Track, alert_ids: Sequence[str]
    ) -> str:
        """'ok' | 'raced' | 'gone' (``portfolio_track.lua``)."""
        k = [
            keys.session(session_id),
            keys.portfolio_track(session_id),
            keys.portfolio_alerts(session_id),
            *(keys.portfolio_alert_state(session_id, a) for a in alert_ids),
        ]
        read = "" if read_tick is None else str(read_tick)
        return as_text(await self._track(k, [read, str(track.tick), *_fields(track)]))

    async def states(self, session_id: str, alert_ids: Sequence[str]) -> dict[str, AlertState]:
        if not alert_ids:
            return {}
        state_keys = [keys.portfolio_alert_state(session_id, a) for a in alert_ids]
        return await read_states(self.redis, alert_ids, state_keys)

    async def apply(
        self,
        session_id: str,
        alert: PortfolioAlert,
        *,
        obs: int,
        tri: str,
        at: float,
        fired: FiredAlert | None,
    ) -> Outcome:
        """Decide one observation with ``alert_transition.lua`` (``tri``: '1' true, '0' false
        beyond the re-arm margin, 'm' false within it); a fire goes to the outbox and the
        history in the same step."""
        if tri == "1" and fired is None:
            raise ValueError("a true observation needs the alert it would fire")
        body, fire_id = ("", "") if fired is None else (fired.model_dump_json(), fired.id)
        symbol = "" if fired is None else fired.symbol
        args: list[Any] = [
            str(obs), tri, repr(at), repr(alert.cooldown_s), "",
            body, fire_id, symbol, str(OUTBOX_CAP), str(self._cap), "0",
        ]  # fmt: skip
        k = [
            keys.portfolio_alert_state(session_id, alert.id),
            keys.ALERT_OUTBOX,
            keys.ALERT_HISTORY,
        ]
        return Outcome(as_text(await self._transition(k, args)))

    async def history(self, session_id: str, limit: int) -> list[FiredAlert]:
        """The session's fires in the shared history, newest first (pages the capped stream)."""
        symbol = f"portfolio:{session_id}".encode()
        out: list[FiredAlert] = []
        start = "+"
        page = 500
        while len(out) < limit:
            raw = await self.redis.call("XREVRANGE", keys.ALERT_HISTORY, start, "-", "COUNT", page)
            rows: list[tuple[bytes, dict[bytes, bytes]]] = raw or []
            for _, fields in rows:
                if fields.get(b"symbol") == symbol and b"alert" in fields:
                    out.append(FiredAlert.model_validate_json(fields[b"alert"]))
                    if len(out) == limit:
                        break
            if len(rows) < page:
                break
            start = "(" + as_text(rows[-1][0])
        return out

    async def drop(self, session_id: str) -> None:
        """Delete every portfolio-alert key of a deleted session."""
        # HGETALL, not HKEYS: the production ACL's commands (infra/redis/acl.py)
        defs = await self.redis.call("HGETALL", keys.portfolio_alerts(session_id))
        doomed = [keys.portfolio_alerts(session_id), keys.portfolio_track(session_id)]
        doomed += [keys.portfolio_alert_state(session_id, as_text(i)) for i in defs or {}]
        await self.redis.call("DEL", *doomed)
