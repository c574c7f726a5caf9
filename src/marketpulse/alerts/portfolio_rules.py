"""Portfolio alerts (pure): what one is, the return index it watches, when it is true.

docs/alerts.md, "Portfolio alerts". A portfolio alert belongs to one session and observes the
session's valuation (``total_value``, ``day_change_pct``, ``drawdown_from_peak``, ``drift``) or
a committed ``analysis_result`` of one holding (``metric``). Its truth goes through the same
edge-triggered decision as a price alert (``rules.Evaluation`` -> ``alert_transition.lua``).

**The return index** (``Track``). Between two valuations the index moves by the return of the
SAME holdings: the quantities held at the earlier valuation, valued at both
(``Σ q_prev·u_now / Σ q_prev·u_prev``; ``u`` a share's value in the base currency). A holdings
edit or a deposit changes the quantities, not the index, so it never fakes a drawdown or a
recovery (time-weighted return). A ticker no longer priced (sold since) leaves the ratio; one
bought since enters it from the next valuation. The peak is the index's running maximum.

**The day.** ``day_change_pct`` is ``100 × (index / index at the day's reference − 1)``: the
reference is the index of the last valuation of the previous UTC day (the portfolio's value
after the previous day's closes of NYSE, 21:00 UTC, and NSE, 10:00 UTC), else, on the first
day watched, the first valuation of the day. Why not each holding's own previous close: the
valuation sees prices, not previous closes, and the markets of one portfolio close at
different instants; one instant for the whole portfolio keeps the figure a return of the same
holdings, like the index it is read from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from marketpulse.alerts.event import FiredAlert, PortfolioDetail, QuoteUsed
from marketpulse.alerts.rules import (
    ALERT_ID_RE,
    CHANNEL_NAME_PATTERN,
    MAX_ROUTES,
    AlertType,
    Evaluation,
    check_routes,
    new_alert_id,
)
from marketpulse.market.symbols import parse_symbol

PortfolioKind = Literal["total_value", "day_change_pct", "drawdown_from_peak", "drift", "metric"]
KINDS: tuple[str, ...] = (
    "total_value", "day_change_pct", "drawdown_from_peak", "drift", "metric",
)  # fmt: skip
METRICS: tuple[str, ...] = (
    "portfolio_risk", "concentration", "correlation", "momentum", "allocation_score",
)  # fmt: skip
ACTIONS = ("increase", "decrease")
TOP = 3  # contributors named in a fire
MAX_TARGETS = 50
VALUE_KINDS = frozenset({"total_value", "day_change_pct", "drawdown_from_peak", "drift"})


class PortfolioAlert(BaseModel):
    """One portfolio alert of one session.

    - ``total_value``: the session's total in its base currency, ``above`` / ``below``
      ``threshold``.
    - ``day_change_pct``: % change of the return index since the day's reference (module
      docstring), ``above`` / ``below`` ``threshold`` (negative for a fall: ``below -3``).
    - ``drawdown_from_peak``: ``100 × (1 − index / peak)`` in %, ``above`` ``threshold``.
    - ``drift``: ``targets`` (ticker -> target weight in %), true when a target's holding
      weighs more than ``band`` points away from it (strictly outside); the value is the
      largest distance.
    - ``metric``: the committed ``metric`` result of holding ``ticker``: ``above`` / ``below``
      ``threshold`` on its ``value``, or (``allocation_score`` only) ``action`` ``increase`` /
      ``decrease``: true when the recommendation is that action.

    ``rearm_margin`` (>= 0, the value's units; for drift, points inside the band) and
    ``cooldown_s`` as for price alerts (docs/alerts.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(default_factory=new_alert_id)
    kind: PortfolioKind
    comparison: Literal["above", "below"] = "above"
    threshold: float = 0.0
    rearm_margin: float = Field(default=0.0, ge=0)
    cooldown_s: float = Field(default=0.0, ge=0)
    targets: dict[str, float] | None = None
    band: float | None = None
    ticker: str | None = None
    metric: str | None = None
    action: Literal["increase", "decrease"] | None = None
    channels: tuple[str, ...] | None = Field(
        default=None,
        description=(
            "the channels a fire goes to, as a price alert's (docs/alerts.md, Channels); unset:"
            " the built-in ones"
        ),
        json_schema_extra={
            "items": {"type": "string", "pattern": CHANNEL_NAME_PATTERN},
            "maxItems": MAX_ROUTES,
            "uniqueItems": True,
        },
    )

    @field_validator("channels")
    @classmethod
    def _channels(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if v is None else check_routes(v)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not ALERT_ID_RE.fullmatch(v):
            raise ValueError("id must be 1-64 characters of letters, digits, '_' or '-'")
        return v

    @field_validator("threshold", "rearm_margin", "cooldown_s", "band")
    @classmethod
    def _finite(cls, v: float | None, info: ValidationInfo) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError(f"{info.field_name} must be a finite number (not NaN or infinity)")
        return v

    @field_validator("ticker", mode="before")
    @classmethod
    def _ticker(cls, v: object) -> object:
        return None if v is None else parse_symbol(v, exact=True)

    @field_validator("targets", mode="before")
    @classmethod
    def _targets(cls, v: object) -> object:
        if v is None:
            return v
        if not isinstance(v, dict) or not 1 <= len(v) <= MAX_TARGETS:
            raise ValueError(f"targets must map 1 to {MAX_TARGETS} tickers to a weight in %")
        out: dict[str, float] = {}
        for name, w in v.items():
            t = parse_symbol(name, exact=True)
            if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w):
                raise ValueError(f"the target weight of {t} must be a number of %")
            if not 0 <= w <= 100:
                raise ValueError(f"the target weight of {t} must be within 0..100 %, got {w:g}")
            out[t] = float(w)
        if sum(out.values()) > 100.0 + 1e-9:
            raise ValueError(f"target weights add up to {sum(out.values()):g} %, over 100")
        return out

    @model_validator(mode="after")
    def _shape(self) -> PortfolioAlert:
        drift = (self.targets, self.band)
        metric = (self.ticker, self.metric, self.action)
        if self.kind != "drift" and drift != (None, None):
            raise ValueError("'targets' and 'band' are only for a drift alert")
        if self.kind != "metric" and metric != (None, None, None):
            raise ValueError("'ticker', 'metric' and 'action' are only for a metric alert")
        if self.kind == "drawdown_from_peak" and (
            self.comparison != "above" or self.threshold <= 0
        ):
            raise ValueError(
                "a drawdown_from_peak alert is 'above' a threshold in % (> 0): the fall "
                "from the peak of the return index"
            )
        if self.kind == "total_value" and self.threshold < 0:
            raise ValueError("a total_value threshold is an amount >= 0 in the base currency")
        if self.kind == "drift" and (self.targets is None or self.band is None or self.band <= 0):
            raise ValueError("a drift alert needs 'targets' (ticker -> %) and 'band' (> 0)")
        if self.kind == "metric":
            if self.ticker is None or self.metric not in METRICS:
                raise ValueError(
                    f"a metric alert needs 'ticker' (a holding) and 'metric' (one of "
                    f"{', '.join(METRICS)})"
                )
            if self.action is not None and self.metric != "allocation_score":
                raise ValueError("'action' is only for the allocation_score metric")
        return self

    @property
    def label(self) -> str:
        if self.kind == "metric":
            return f"{self.metric}({self.ticker})"
        return {"day_change_pct": "day change %", "drawdown_from_peak": "drawdown %"}.get(
            self.kind, self.kind
        )

    def tickers(self) -> list[str]:
        """The holdings this alert names (each must be held when it is created)."""
        if self.kind == "drift":
            return sorted(self.targets or {})
        return [self.ticker] if self.ticker else []


# -- the return index -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Track:
    """A session's return index as persisted (``portfolio_store.py``): the last valuation's
    ``tick``, ``day`` (UTC date), ``index`` and ``peak``, the day's reference ``day_index``,
    the unit values at the peak and at the day's reference (each holding's share of a move),
    and the last valuation's quantities, unit values and total."""

    tick: int
    day: str
    index: float
    peak: float
    day_index: float
    quantities: dict[str, float]
    units: dict[str, float]
    total: float
    peak_units: dict[str, float] = field(default_factory=dict)
    day_units: dict[str, float] = field(default_factory=dict)

    @property
    def drawdown_pct(self) -> float:
        return 100.0 * (1.0 - self.index / self.peak) if self.peak > 0 else 0.0

    @property
    def day_change_pct(self) -> float:
        return 100.0 * (self.index / self.day_index - 1.0) if self.day_index > 0 else 0.0

    def weights(self) -> dict[str, float]:
        """Each holding's weight in % of the total (market values in the base currency)."""
        values = {t: q * self.units.get(t, 0.0) for t, q in self.quantities.items()}
        total = math.fsum(values.values())
        return {t: 100.0 * v / total for t, v in values.items()} if total > 0 else {}


def period_return(
    quantities: Mapping[str, float], before: Mapping[str, float], after: Mapping[str, float]
) -> float:
    """The gross return (1 + r) of ``quantities`` from unit values ``before`` to ``after``,
    over the tickers priced at both (1.0 when none is)."""
    common = [t for t in quantities if t in before and t in after]
    v0 = math.fsum(quantities[t] * before[t] for t in common)
    v1 = math.fsum(quantities[t] * after[t] for t in common)
    return v1 / v0 if v0 > 0 and math.isfinite(v1) else 1.0


def advance(
    track: Track | None,
    *,
    tick: int,
    day: str,
    quantities: Mapping[str, float],
    units: Mapping[str, float],
    total: float,
) -> Track:
    """The track after a valuation at ``tick``: the index moves by the return of the holdings
    held at the previous valuation (never by an edit or a deposit); a new peak records the
    unit values; a new day takes the previous valuation as its reference."""
    q, u = dict(quantities), dict(units)
    if track is None:
        return Track(tick, day, 1.0, 1.0, 1.0, q, u, total, dict(u), dict(u))
    index = track.index * period_return(track.quantities, track.units, u)
    peak, peak_units = track.peak, track.peak_units
    if index >= peak:
        peak, peak_units = index, dict(u)
    day_index, day_units = track.day_index, track.day_units
    if day != track.day:
        day_index, day_units = track.index, dict(track.units)
    return Track(tick, day, index, peak, day_index, q, u, total, peak_units, day_units)


# -- evaluation -----------------------------------------------------------------------------


def _judge(alert: PortfolioAlert, value: float) -> Evaluation:
    t, m = alert.threshold, alert.rearm_margin
    if alert.comparison == "above":
        return Evaluation(value >= t, value < t - m, value, ((alert.label, value),))
    return Evaluation(value <= t, value > t + m, value, ((alert.label, value),))


def _moves(track: Track, reference: Mapping[str, float]) -> list[dict[str, str | float | None]]:
    """Each holding's move in the base currency since ``reference`` (unit values), at the
    current quantities, largest loss or gain first; ``share`` of the sum of the moves."""
    moves = {
        t: q * (track.units[t] - reference[t])
        for t, q in track.quantities.items()
        if t in reference and t in track.units
    }
    net = math.fsum(moves.values())
    ranked = sorted(moves.items(), key=lambda kv: (-abs(kv[1]), kv[0]))[:TOP]
    return [
        {"ticker": t, "amount": round(a, 2), "share": round(a / net, 4) if net else None}
        for t, a in ranked
    ]


def _drift(alert: PortfolioAlert, track: Track) -> tuple[float, list[dict[str, Any]]]:
    """The largest distance from a target in points, and each target's row, largest first."""
    weights = track.weights()
    drifts = {t: weights.get(t, 0.0) - target for t, target in (alert.targets or {}).items()}
    order = sorted(drifts, key=lambda t: (-abs(drifts[t]), t))
    worst = abs(drifts[order[0]]) if order else 0.0
    rows: list[dict[str, Any]] = [
        {
            "ticker": t,
            "weight": round(weights.get(t, 0.0), 4),
            "target": (alert.targets or {})[t],
            "drift": round(drifts[t], 4),
            "outside": abs(drifts[t]) > (alert.band or 0.0),
        }
        for t in order
    ]
    return worst, rows


def evaluate_valuation(
    alert: PortfolioAlert, track: Track
) -> tuple[Evaluation, list[dict[str, Any]]] | None:
    """A valuation alert at the track's latest valuation: its evaluation and the holdings
    that drove it; None for a ``metric`` alert (it observes results)."""
    if alert.kind == "total_value":
        return _judge(alert, track.total), _moves(track, track.day_units)
    if alert.kind == "day_change_pct":
        return _judge(alert, track.day_change_pct), _moves(track, track.day_units)
    if alert.kind == "drawdown_from_peak":
        return _judge(alert, track.drawdown_pct), _moves(track, track.peak_units)
    if alert.kind == "drift":
        worst, rows = _drift(alert, track)
        band, m = alert.band or 0.0, alert.rearm_margin
        out = [r for r in rows if r["outside"]]
        ev = Evaluation(worst > band, worst <= band - m, worst, (("drift points", worst),))
        return ev, out or rows[:TOP]
    return None


def evaluate_result(
    alert: PortfolioAlert, ticker: str, metric: str, value: float | None, details: Mapping[str, Any]
) -> tuple[Evaluation, list[dict[str, Any]]] | None:
    """A metric alert at a committed result; None when the result is not its (ticker,
    metric) or has no value (a metric ``null`` for want of history)."""
    if alert.kind != "metric" or ticker != alert.ticker or metric != alert.metric:
        return None
    row: dict[str, Any] = {"ticker": ticker, "value": value}
    if alert.action is not None:
        action = details.get("action")
        if not isinstance(action, str):
            return None
        row["action"] = action
        truth = action == alert.action
        return Evaluation(truth, not truth, value, ((f"{alert.label} action", value),)), [row]
    if value is None or not math.isfinite(value):
        return None
    return _judge(alert, value), [row]


def why(alert: PortfolioAlert, ev: Evaluation, base_currency: str) -> str:
    """The readable reason: ``drawdown % 10.3 >= 10``, ``drift points 7.1 > 5``."""
    v = "none" if ev.value is None else f"{ev.value:.6g}"
    if alert.kind == "drift":
        return f"drift {v} points > {alert.band:g} (band)"
    if alert.action is not None:
        return f"{alert.label} recommends {alert.action}"
    op = ">=" if alert.comparison == "above" else "<="
    unit = f" {base_currency}" if alert.kind == "total_value" else ""
    return f"{alert.label} {v}{unit} {op} {alert.threshold:g}{unit}"


def fire(
    alert: PortfolioAlert,
    ev: Evaluation,
    contributors: list[dict[str, Any]],
    *,
    session_id: str,
    base_currency: str,
    observation: int,
    at: datetime,
    total: float,
) -> FiredAlert:
    """The fire of ``alert`` (its ``quote`` is the valuation: the total in the base)."""
    return FiredAlert(
        alert_id=alert.id,
        symbol=f"portfolio:{session_id}",
        alert_type=AlertType.PORTFOLIO,
        comparison="outside" if alert.kind == "drift" else alert.comparison,
        threshold=alert.band if alert.kind == "drift" and alert.band else alert.threshold,
        value=ev.value,
        observation=observation,
        fired_at=at,
        quote=QuoteUsed(price=total, volume=0, timestamp=at, source="portfolio", age_s=0.0),
        values=dict(ev.values),
        why=why(alert, ev, base_currency),
        session_id=session_id,
        routes=alert.channels,
        portfolio=PortfolioDetail(
            kind=alert.kind, base_currency=base_currency, contributors=contributors
        ),
    )
