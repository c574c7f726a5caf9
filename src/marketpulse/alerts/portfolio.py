"""``PortfolioAlerts``: the alerts of a session's portfolio (docs/alerts.md, "Portfolio alerts").

The sessions call it through their ``PortfolioWatch`` port (``sessions/watch.py``, wired by the
app): after each revaluation sweep chunk (``valued``), after each committed ``analysis_result``
(``result``) and when a session is deleted (``deleted``). Its HTTP edge is the sessions' (the
session's token authorises, ``sessions/alerts_http.py``), through ``PortfolioAlertsPort``.

Per valuation of a session that has portfolio alerts: the return index advances
(``portfolio_rules.advance``) and is stored only if no other sweep stored a later one
(``portfolio_track.lua``, keyed by the tick read), then each valuation alert is decided at the
tick by ``alert_transition.lua``: edge-triggered, re-arm margin, cooldown, idempotent per
observation, the fire on the outbox (so on every channel, the session's sockets included: the
``websocket`` channel's publish is forwarded to the sockets of the fire's ``session_id``) and in
the history, in one step. A metric alert observes committed results, its observation the
result's time in µs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from marketpulse.alerts.event import FiredAlert
from marketpulse.alerts.portfolio_rules import (
    PortfolioAlert,
    Track,
    advance,
    evaluate_result,
    evaluate_valuation,
    fire,
)
from marketpulse.alerts.portfolio_store import MAX_PER_SESSION, PortfolioAlertStore
from marketpulse.alerts.rules import Evaluation, Outcome
from marketpulse.errors import AlertNotFound, LimitReached, SessionNotFound, ValidationFailed
from marketpulse.sessions.watch import CommittedResult, ValuedSession

log = logging.getLogger(__name__)

PARALLEL = 64  # sessions of one sweep chunk evaluated at once (their scripts share the mux)


def _when(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def _tri(ev: Evaluation) -> str:
    return "1" if ev.truth else "0" if ev.rearm else "m"


class PortfolioAlerts:
    def __init__(self, store: PortfolioAlertStore) -> None:
        self.store = store
        self.fired = 0  # fires decided here (tests and the dashboard read it)
        self.applied = asyncio.Event()  # set (then replaced) after each valuation batch

    # -- CRUD (the session's token was checked by the edge) ------------------------------------

    async def put(
        self, session_id: str, alert: PortfolioAlert, holdings: Mapping[str, float], *, reset: bool
    ) -> PortfolioAlert:
        """Store ``alert`` (replace one with its id; ``reset`` an edit's state). Raises
        ValidationFailed (a named ticker not held), LimitReached, SessionNotFound."""
        missing = [t for t in alert.tickers() if t not in holdings]
        if missing:
            raise ValidationFailed(
                f"not in the portfolio: {', '.join(missing)} (a portfolio alert names holdings)",
                code="not_in_portfolio",
            )
        answer = await self.store.put(session_id, alert, reset=reset)
        if answer == "gone":
            raise SessionNotFound()
        if answer == "full":
            raise LimitReached(
                f"a session has at most {MAX_PER_SESSION} portfolio alerts; delete one first"
            )
        return alert

    async def remove(self, session_id: str, alert_id: str) -> None:
        if not await self.store.remove(session_id, alert_id):
            raise AlertNotFound(f"no portfolio alert {alert_id!r} in this session")

    async def listing(self, session_id: str) -> dict[str, Any]:
        """The alerts with their state and the values at the last valuation, and the track."""
        alerts = await self.store.alerts(session_id)
        states = await self.store.states(session_id, [a.id for a in alerts])
        (track,) = await self.store.tracks([session_id])
        rows = []
        for a in alerts:
            st = states.get(a.id)
            now = evaluate_valuation(a, track) if track is not None else None
            rows.append(
                {
                    **a.model_dump(mode="json"),
                    "state": {
                        "armed": True if st is None else st.armed,
                        "last_fired_at": None if st is None else st.last_fired_at,
                        "value": None if now is None else now[0].value,
                        "true": None if now is None else now[0].truth,
                    },
                }
            )
        return {"alerts": rows, "track": None if track is None else _track_out(track)}

    async def history(self, session_id: str, limit: int) -> list[FiredAlert]:
        return await self.store.history(session_id, limit)

    # -- the PortfolioWatch port ---------------------------------------------------------------

    async def watched(self, session_ids: Sequence[str]) -> list[bool]:
        return await self.store.have_alerts(session_ids)

    async def valued(self, sessions: Sequence[ValuedSession]) -> None:
        """Advance each watched session's index and decide its valuation alerts."""
        defs = await self.store.alerts_of([v.session_id for v in sessions])
        watched = [(v, d) for v, d in zip(sessions, defs, strict=True) if d]
        if watched:
            tracks = await self.store.tracks([v.session_id for v, _ in watched])
            gate = asyncio.Semaphore(PARALLEL)

            async def one(v: ValuedSession, d: list[PortfolioAlert], t: Track | None) -> None:
                async with gate:
                    await self._valued_one(v, d, t)

            async with asyncio.TaskGroup() as tg:
                for (v, d), t in zip(watched, tracks, strict=True):
                    tg.create_task(one(v, d, t))
        self.applied.set()
        self.applied = asyncio.Event()

    async def _valued_one(
        self, v: ValuedSession, alerts: list[PortfolioAlert], track: Track | None
    ) -> None:
        if track is not None and track.tick >= v.tick:
            return  # this tick (or a later one) is applied already
        new = advance(
            track,
            tick=v.tick,
            day=v.valued_at[:10],
            quantities=v.quantities,
            units=v.unit_values,
            total=v.total,
        )
        saved = await self.store.save_track(
            v.session_id, None if track is None else track.tick, new, [a.id for a in alerts]
        )
        if saved != "ok":
            return  # another sweep wrote a later valuation, or the session is gone
        at = _when(v.valued_at)
        for alert in alerts:
            judged = evaluate_valuation(alert, new)
            if judged is None:
                continue
            ev, contributors = judged
            fired = None
            if ev.truth:
                fired = fire(
                    alert, ev, contributors, session_id=v.session_id,
                    base_currency=v.base_currency, observation=v.tick, at=at, total=v.total,
                )  # fmt: skip
            await self._apply(v.session_id, alert, v.tick, ev, at, fired)

    async def result(self, result: CommittedResult) -> None:
        """Decide the metric alerts a committed result observes."""
        alerts = [a for a in await self.store.alerts(result.session_id) if a.kind == "metric"]
        if not alerts:
            return
        at = _when(result.timestamp)
        obs = int(at.timestamp() * 1_000_000)
        (track,) = await self.store.tracks([result.session_id])
        base = str(result.details.get("base_currency", ""))
        for alert in alerts:
            judged = evaluate_result(
                alert, result.ticker, result.metric, result.value, result.details
            )
            if judged is None:
                continue
            ev, contributors = judged
            fired = None
            if ev.truth:
                fired = fire(
                    alert, ev, contributors, session_id=result.session_id, base_currency=base,
                    observation=obs, at=at, total=0.0 if track is None else track.total,
                )  # fmt: skip
            await self._apply(result.session_id, alert, obs, ev, at, fired)

    async def deleted(self, session_id: str) -> None:
        await self.store.drop(session_id)

    async def _apply(
        self,
        session_id: str,
        alert: PortfolioAlert,
        obs: int,
        ev: Evaluation,
        at: datetime,
        fired: FiredAlert | None,
    ) -> None:
        outcome = await self.store.apply(
            session_id, alert, obs=obs, tri=_tri(ev), at=at.timestamp(), fired=fired
        )
        if outcome is Outcome.FIRED and fired is not None:
            self.fired += 1
            log.info("portfolio alert %s of session %s fired: %s", alert.id, session_id, fired.why)


def _track_out(t: Track) -> dict[str, Any]:
    return {
        "tick": t.tick,
        "index": t.index,
        "peak": t.peak,
        "drawdown_pct": t.drawdown_pct,
        "day_change_pct": t.day_change_pct,
        "total_value": t.total,
        "weights": t.weights(),
    }
