"""Alert rules: what an alert is and when it is true (pure: quotes and times are arguments).

Semantics (also in docs/alerts.md):

- ``price_threshold``: the observed value is the quote's price.
- ``percentage_change``: ``100 * (price - previous_close) / previous_close``; the previous close
  is ``StockData.previous_close`` (else ``close``): the close of the session before the quote's
  own session (``session_date``). The providers guarantee it (``yahoo``: the bar before the
  quote's session, not the bar before Yahoo's last row; ``nse``: NSE's ``previousClose``), and
  while an exchange is closed the quote served is the closing print itself (the fetcher's
  market hours), so a night, a weekend or a holiday neither moves the reference nor makes a
  new observation. ``above T`` means a rise of at least T %, ``below T`` a fall of at least
  T % (change <= -T): thresholds are magnitudes, never negative.
- ``volume_spike``: ``volume / mean(previous 20 observed volumes)``; the current observation is
  *not* part of the mean. Until 20 earlier observations exist (or when their mean is 0) there is
  no value and the alert does nothing.
- ``above`` is ``value >= threshold`` and ``below`` is ``value <= threshold`` (exactly at the
  threshold counts: the level is reached).
- An alert fires when its condition *becomes* true (the first observation counts as a change
  from "false"), and re-arms only after an observation where it is false. A crossing inside the
  cooldown after the last fire is suppressed (not deferred): it needs to go false and true again.
- An alert whose ``expires_at`` is at or before the observation time never fires.
- A stale or insane quote is not an observation at all: it fires nothing and changes nothing.

Issue 19 (docs/alerts.md, "Rules"): ``crosses_above`` / ``crosses_below`` have the truth of
above / below but start disarmed (a new or edited one needs a false observation first);
``indicator`` alerts observe an ``Indicator`` (``IndicatorValues``); ``all_of`` holds when 2..5
clauses hold at one observation; ``rearm_margin`` re-arms a fired alert only once the value is
beyond the threshold by it on the false side; a fire while ``snoozed_until`` is muted (recorded,
not delivered). ``evaluate`` gives an ``Evaluation`` (truth, rearm, values), ``transition`` its
effect on the state: the Python reference of ``lua/alert_transition.lua``, which the live
engine and the backtest share.

Times are market time: the quote's timestamp, so replays are deterministic.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import Enum
from typing import Literal, Protocol, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from marketpulse.market.quotes import StockData
from marketpulse.market.symbols import parse_symbol

VOLUME_WINDOW = 20
COMPARISONS = ("above", "below", "crosses_above", "crosses_below")
SIMPLE_COMPARISONS = ("above", "below")
ALERT_ID_PATTERN = r"^[A-Za-z0-9_\-]{1,64}$"
ALERT_ID_RE = re.compile(ALERT_ID_PATTERN)


def new_alert_id() -> str:
    return uuid.uuid4().hex


class AlertType(Enum):
    PRICE_THRESHOLD = "price_threshold"
    PERCENTAGE_CHANGE = "percentage_change"
    VOLUME_SPIKE = "volume_spike"
    INDICATOR = "indicator"
    ALL_OF = "all_of"


SEED_TYPES = frozenset(
    {AlertType.PRICE_THRESHOLD, AlertType.PERCENTAGE_CHANGE, AlertType.VOLUME_SPIKE}
)
CLAUSE_TYPES = (*SEED_TYPES, AlertType.INDICATOR)


def _alert_type(v: object, allowed: Sequence[AlertType]) -> AlertType:
    if isinstance(v, AlertType) and v in allowed:
        return v
    known = [t.value for t in AlertType if t in allowed]
    if isinstance(v, str) and v.strip().lower() in known:
        return AlertType(v.strip().lower())
    raise ValueError(f"unknown alert type {v!r}; choose one of {', '.join(known)}")


def _comparison(v: object, allowed: Sequence[str]) -> str:
    if isinstance(v, str) and v.strip().lower() in allowed:
        return v.strip().lower()
    choices = " or ".join(repr(c) for c in allowed)
    raise ValueError(f"comparison must be {choices}, got {v!r}")


def _finite(name: str, v: float) -> float:
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number (not NaN or infinity)")
    if name == "rearm_margin" and v < 0:
        raise ValueError(f"rearm_margin must be >= 0 (a distance from the threshold), got {v:g}")
    return v


def _threshold_check(alert_type: AlertType, threshold: float) -> None:
    if alert_type in SEED_TYPES and threshold < 0:
        raise ValueError(
            f"threshold must be >= 0, got {threshold:g} (a {alert_type.value} "
            "threshold is a magnitude; only indicator thresholds may be negative)"
        )


def _indicator_check(alert_type: AlertType, indicator: Indicator | None) -> None:
    if alert_type is AlertType.INDICATOR and indicator is None:
        raise ValueError('an indicator alert needs \'indicator\' (e.g. {"kind": "rsi"})')
    if alert_type is not AlertType.INDICATOR and indicator is not None:
        raise ValueError(
            f"'indicator' is only for alert_type 'indicator', not {alert_type.value!r}"
        )


# -- rules (issue 19): indicators, crossings, all_of, hysteresis, snooze ---------------------

IndicatorKind = Literal[
    "rsi", "sma", "ema", "price_vs_sma", "price_vs_ema", "ma_cross",
    "change_sessions", "from_52w_high", "from_52w_low", "drawdown",
]  # fmt: skip
INDICATOR_KINDS: tuple[str, ...] = get_args(IndicatorKind)
# kinds observed against one ``period`` (``rsi``'s defaults to 14)
PERIOD_KINDS = frozenset(
    {"rsi", "sma", "ema", "price_vs_sma", "price_vs_ema", "change_sessions", "drawdown"}
)
MAX_PERIOD = 400
RSI_PERIOD = 14
YEAR_SESSIONS = 252  # the sessions of ``from_52w_high`` / ``from_52w_low``
MAX_CLAUSES = 5
_NAMES = {
    "rsi": "RSI", "sma": "SMA", "ema": "EMA", "price_vs_sma": "price vs SMA",
    "price_vs_ema": "price vs EMA", "change_sessions": "change over sessions",
    "drawdown": "drawdown", "from_52w_high": "from 52w high", "from_52w_low": "from 52w low",
}  # fmt: skip


def _period(name: str, v: object) -> int:
    if isinstance(v, float) and v.is_integer():  # JSON's 14.0 is the integer 14
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_PERIOD:
        raise ValueError(f"indicator {name} must be an integer in 1..{MAX_PERIOD}, got {v!r}")
    return v


class Indicator(BaseModel):
    """What an ``indicator`` alert (or clause) observes; docs/alerts.md, "Indicators".

    ``rsi`` (``period``, default 14), ``sma`` / ``ema`` / ``price_vs_sma`` / ``price_vs_ema``
    / ``change_sessions`` / ``drawdown`` (``period`` required), ``ma_cross`` (``fast`` and
    ``slow``, normally fast < slow, ``average`` ``sma`` (default) or ``ema``),
    ``from_52w_high`` / ``from_52w_low`` (no parameter). A parameter the kind does not take
    is refused, so equal specs are equal values (a book computes each once)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: IndicatorKind
    period: int | None = None
    fast: int | None = None
    slow: int | None = None
    average: Literal["sma", "ema"] | None = None

    @field_validator("kind", mode="before")
    @classmethod
    def _kind(cls, v: object) -> object:
        if isinstance(v, str) and v in INDICATOR_KINDS:
            return v
        raise ValueError(
            f"unknown indicator kind {v!r}; choose one of {', '.join(INDICATOR_KINDS)}"
        )

    @field_validator("period", "fast", "slow", mode="before")
    @classmethod
    def _periods(cls, v: object, info: ValidationInfo) -> object:
        return None if v is None else _period(str(info.field_name), v)

    @field_validator("average", mode="before")
    @classmethod
    def _average(cls, v: object) -> object:
        if v is None or v in ("sma", "ema"):
            return v
        raise ValueError(f"indicator average must be 'sma' or 'ema', got {v!r}")

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: object) -> object:
        if isinstance(data, dict):
            if data.get("kind") == "rsi" and data.get("period") is None:
                data = {**data, "period": RSI_PERIOD}
            if data.get("kind") == "ma_cross" and data.get("average") is None:
                data = {**data, "average": "sma"}
        return data

    @model_validator(mode="after")
    def _shape(self) -> Indicator:
        given = {f for f in ("period", "fast", "slow", "average") if getattr(self, f) is not None}
        if self.kind in PERIOD_KINDS:
            wanted = {"period"}
        elif self.kind == "ma_cross":
            wanted = {"fast", "slow", "average"}
        else:
            wanted = set()
        if missing := sorted(wanted - given):
            raise ValueError(f"indicator {self.kind} needs {', '.join(missing)}")
        if extra := sorted(given - wanted):
            raise ValueError(f"indicator {self.kind} takes no {', '.join(extra)}")
        # fast >= slow is accepted (the value is defined for any pair: the ratio of the two
        # averages); a JSON schema cannot compare two fields, and the HTTP body's schema must
        # say exactly what is accepted (schemathesis checks it)
        return self

    @property
    def label(self) -> str:
        """``RSI(14)``, ``price vs SMA(50)``, ``SMA(10)/SMA(50)``, ``from 52w high``."""
        if self.kind == "ma_cross":
            avg = (self.average or "sma").upper()
            return f"{avg}({self.fast})/{avg}({self.slow})"
        name = _NAMES[self.kind]
        return name if self.period is None else f"{name}({self.period})"


class IndicatorValues(Protocol):
    """Indicator values of one symbol at the current observation (``indicators.IndicatorBook``);
    None during warm-up."""

    def value(self, spec: Indicator) -> float | None: ...


class AlertClause(BaseModel):
    """One condition of an ``all_of`` alert, on the alert's symbol (no nesting)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    alert_type: AlertType
    comparison: str
    threshold: float
    indicator: Indicator | None = None
    rearm_margin: float = 0.0

    @field_validator("alert_type", mode="before")
    @classmethod
    def _type(cls, v: object) -> AlertType:
        return _alert_type(v, CLAUSE_TYPES)

    @field_validator("comparison", mode="before")
    @classmethod
    def _cmp(cls, v: object) -> str:
        return _comparison(v, SIMPLE_COMPARISONS)

    @field_validator("threshold", "rearm_margin")
    @classmethod
    def _numbers(cls, v: float, info: ValidationInfo) -> float:
        return _finite(str(info.field_name), v)

    @model_validator(mode="after")
    def _shape(self) -> AlertClause:
        _indicator_check(self.alert_type, self.indicator)
        _threshold_check(self.alert_type, self.threshold)
        return self

    @property
    def label(self) -> str:
        return _label(self.alert_type, self.indicator)


class AlertCondition(BaseModel):
    """One alert definition (the seed's fields plus id, cooldown and expiry, and issue 19's
    crossings, indicator, all_of, re-arm margin and snooze; docs/alerts.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    symbol: str
    alert_type: AlertType
    threshold: float = 0.0
    comparison: str
    id: str = Field(default_factory=new_alert_id)
    cooldown_s: float = Field(default=0.0, ge=0)
    expires_at: datetime | None = None
    indicator: Indicator | None = None
    all_of: tuple[AlertClause, ...] | None = None
    rearm_margin: float = 0.0
    snoozed_until: datetime | None = None

    @field_validator("symbol", mode="before")
    @classmethod
    def _symbol(cls, v: object) -> str:
        return parse_symbol(v)

    @field_validator("alert_type", mode="before")
    @classmethod
    def _alert_type(cls, v: object) -> object:
        return _alert_type(v, tuple(AlertType))

    @field_validator("comparison", mode="before")
    @classmethod
    def _comparison(cls, v: object) -> str:
        return _comparison(v, COMPARISONS)

    @field_validator("threshold", "rearm_margin", "cooldown_s")
    @classmethod
    def _numbers(cls, v: float, info: ValidationInfo) -> float:
        return _finite(str(info.field_name), v)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not ALERT_ID_RE.fullmatch(v):
            raise ValueError("id must be 1-64 characters of letters, digits, '_' or '-'")
        return v

    @model_validator(mode="after")
    def _shape(self) -> AlertCondition:
        _indicator_check(self.alert_type, self.indicator)
        if self.alert_type is not AlertType.ALL_OF:
            if self.all_of is not None:
                raise ValueError(
                    f"'all_of' is only for alert_type 'all_of', not {self.alert_type.value!r}"
                )
            _threshold_check(self.alert_type, self.threshold)
            return self
        n = 0 if self.all_of is None else len(self.all_of)
        if not 2 <= n <= MAX_CLAUSES:
            raise ValueError(
                f"an all_of alert needs 'all_of' with 2 to {MAX_CLAUSES} clauses, got {n}"
            )
        if self.comparison not in ("above", "crosses_above"):
            raise ValueError(
                "an all_of alert's comparison must be 'above' (fires when every clause becomes "
                f"true together) or 'crosses_above', got {self.comparison!r}"
            )
        if self.threshold != 0:
            raise ValueError("an all_of alert takes no threshold (its clauses have theirs)")
        if self.rearm_margin != 0:
            raise ValueError("an all_of alert takes no rearm_margin (its clauses have theirs)")
        return self

    @property
    def direction(self) -> Literal["above", "below"]:
        """``above`` for above / crosses_above, else ``below``."""
        return "above" if self.comparison in ("above", "crosses_above") else "below"

    @property
    def crossing(self) -> bool:
        """A ``crosses_*`` alert: it starts disarmed (needs a false observation first)."""
        return self.comparison.startswith("crosses_")

    @property
    def simple(self) -> bool:
        """One the price index evaluates (alerts/index.py): a seed type, above / below, no
        margin, not snoozed. Every other alert is a rule alert, evaluated with ``evaluate``."""
        return (
            self.alert_type in SEED_TYPES
            and self.comparison in SIMPLE_COMPARISONS
            and self.rearm_margin == 0
            and self.snoozed_until is None
        )

    @property
    def label(self) -> str:
        return _label(self.alert_type, self.indicator)

    def indicators(self) -> list[Indicator]:
        """The indicator specs this alert observes (none for the seed's types)."""
        if self.indicator is not None:
            return [self.indicator]
        return [c.indicator for c in self.all_of or () if c.indicator is not None]


def _label(alert_type: AlertType, indicator: Indicator | None) -> str:
    if indicator is not None:
        return indicator.label
    return {
        AlertType.PRICE_THRESHOLD: "price",
        AlertType.PERCENTAGE_CHANGE: "change %",
        AlertType.VOLUME_SPIKE: "volume x",
    }.get(alert_type, alert_type.value)


def observed_value(
    alert_type: AlertType, quote: StockData, volumes: Sequence[int] | None = None
) -> float | None:
    """The value an alert of a seed type compares to its threshold, or None (no baseline).

    For ``percentage_change`` with ``below`` the caller negates the sign (see ``holds``).
    ``volumes`` are the earlier observed volumes, oldest first (only the last 20 are used).
    An indicator's value comes from ``IndicatorValues`` (``evaluate``), an all_of has none.
    """
    if alert_type is AlertType.PRICE_THRESHOLD:
        return quote.price
    if alert_type is AlertType.PERCENTAGE_CHANGE:
        base = quote.previous_close if quote.previous_close is not None else quote.close
        if not math.isfinite(base) or base <= 0:
            return None
        return 100.0 * (quote.price - base) / base
    if alert_type is not AlertType.VOLUME_SPIKE:
        return None
    window = list(volumes or [])[-VOLUME_WINDOW:]
    if len(window) < VOLUME_WINDOW:
        return None
    mean = sum(window) / VOLUME_WINDOW
    return quote.volume / mean if mean > 0 else None


def signed(alert_type: AlertType, comparison: str, value: float) -> float:
    """The value in the alert's own orientation: a fall is positive for ``% change below``."""
    if alert_type is AlertType.PERCENTAGE_CHANGE and comparison in ("below", "crosses_below"):
        return -value
    return value


def _judge(
    alert_type: AlertType, comparison: str, threshold: float, margin: float, value: float
) -> tuple[bool, bool]:
    """(truth, rearm) of one condition at ``value``: rearm is "false beyond the margin"."""
    v = signed(alert_type, comparison, value)
    if alert_type is AlertType.PERCENTAGE_CHANGE or comparison in ("above", "crosses_above"):
        return v >= threshold, v < threshold - margin
    return v <= threshold, v > threshold + margin


def holds(condition: AlertCondition, value: float) -> bool:
    """Whether the condition is true at ``value`` (the raw observed value)."""
    return _judge(condition.alert_type, condition.comparison, condition.threshold, 0.0, value)[0]


def usable(quote: StockData) -> bool:
    """A quote that may drive alerts: fresh and sane."""
    return not quote.stale and quote.is_sane()


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One alert at one observation. ``truth``: the condition holds; ``rearm``: it is false
    beyond the re-arm margin (a fired alert re-arms); false within the margin is neither.
    ``value`` is the observed value (None for all_of), ``values`` each clause's (label, value)
    (one pair for a single condition), for the fire's "why" and the alert's state."""

    truth: bool
    rearm: bool
    value: float | None
    values: tuple[tuple[str, float | None], ...] = ()

    @property
    def tri(self) -> Literal["true", "rearm", "margin"]:
        """The tri-state the store is told: true, false-and-rearm, false-within-margin."""
        return "true" if self.truth else "rearm" if self.rearm else "margin"


def _clause_value(
    alert_type: AlertType,
    indicator: Indicator | None,
    quote: StockData,
    volumes: Sequence[int],
    indicators: IndicatorValues | None,
) -> float | None:
    if indicator is not None:
        value = None if indicators is None else indicators.value(indicator)
    else:
        value = observed_value(alert_type, quote, volumes)
    return value if value is not None and math.isfinite(value) else None


def evaluate(
    alert: AlertCondition,
    quote: StockData,
    *,
    volumes: Sequence[int],
    indicators: IndicatorValues | None,
) -> Evaluation | None:
    """``alert`` at ``quote``; None when a value it needs is missing (warm-up, no baseline,
    no indicators): the alert then does nothing at this observation.

    ``volumes`` are the symbol's earlier observed volumes (oldest first), ``indicators`` its
    indicator values at this quote. An all_of is true when every clause is, and re-arms when
    any clause is false beyond its own margin."""
    if alert.all_of is not None:
        truth, rearm = True, False
        values: list[tuple[str, float | None]] = []
        for c in alert.all_of:
            v = _clause_value(c.alert_type, c.indicator, quote, volumes, indicators)
            if v is None:
                return None
            t, r = _judge(c.alert_type, c.comparison, c.threshold, c.rearm_margin, v)
            truth, rearm = truth and t, rearm or r
            values.append((c.label, v))
        return Evaluation(truth, rearm, None, tuple(values))
    value = _clause_value(alert.alert_type, alert.indicator, quote, volumes, indicators)
    if value is None:
        return None
    t, r = _judge(alert.alert_type, alert.comparison, alert.threshold, alert.rearm_margin, value)
    return Evaluation(t, r, value, ((alert.label, value),))


def _one_why(
    label: str, alert_type: AlertType, comparison: str, threshold: float, value: float | None
) -> str:
    shown = "none" if value is None else f"{value:.6g}"
    if alert_type is AlertType.PERCENTAGE_CHANGE and comparison in ("below", "crosses_below"):
        return f"{label} {shown} <= {-threshold:g}"
    op = ">=" if comparison in ("above", "crosses_above") else "<="
    return f"{label} {shown} {op} {threshold:g}"


def why(alert: AlertCondition, ev: Evaluation) -> str:
    """The readable reason of a fire: ``RSI(14) 71.2 >= 70 and price 2810 >= 2800``."""
    if alert.all_of is not None:
        return " and ".join(
            _one_why(c.label, c.alert_type, c.comparison, c.threshold, v)
            for c, (_, v) in zip(alert.all_of, ev.values, strict=True)
        )
    return _one_why(alert.label, alert.alert_type, alert.comparison, alert.threshold, ev.value)


class Outcome(Enum):
    FIRED = "fired"  # a muted fire (snoozed) too: the state says ``muted``
    SUPPRESSED = "suppressed"  # became true inside the cooldown
    EXPIRED = "expired"
    REARMED = "rearmed"
    UNCHANGED = "unchanged"
    DUPLICATE = "duplicate"  # this observation was already applied (another instance)
    GONE = "gone"  # the alert was deleted meanwhile


@dataclass(frozen=True, slots=True)
class AlertState:
    """Armed/fired state of one alert, as stored. ``muted``: the last fire was snoozed
    (recorded in history, not delivered)."""

    armed: bool = True
    last_obs: int | None = None
    last_fired_at: float | None = None  # epoch seconds, market time
    muted: bool = False


def initial_state(alert: AlertCondition) -> AlertState:
    """The state of a new or edited alert: a crossing starts disarmed (it needs a false
    observation first), any other armed."""
    return AlertState(armed=not alert.crossing)


def snoozed(at: float, snoozed_until: float | None) -> bool:
    """Whether a fire at ``at`` is muted (recorded, not delivered)."""
    return snoozed_until is not None and at < snoozed_until


def transition(
    state: AlertState,
    *,
    obs: int,
    at: float,
    cooldown_s: float,
    expires_at: float | None,
    ev: Evaluation | None = None,
    truth: bool | None = None,
    snoozed_until: float | None = None,
) -> tuple[AlertState, Outcome]:
    """Apply one observation to an alert's state (the reference for ``alert_transition.lua``).

    ``ev`` (or, without a margin, a bare ``truth``) is the observation. True and armed fires
    (unless expired or inside the cooldown) and disarms; false beyond the margin re-arms;
    false within the margin changes nothing. A fire while ``snoozed`` is a fire with the
    state's ``muted`` set. Idempotent per observation: an ``obs`` at or before ``last_obs``
    changes nothing.
    """
    if ev is not None:
        t, rearm = ev.truth, ev.rearm
    elif truth is not None:
        t, rearm = truth, not truth
    else:
        raise TypeError("transition needs ev or truth")
    if state.last_obs is not None and obs <= state.last_obs:
        return state, Outcome.DUPLICATE
    if not t:
        if not rearm:
            return replace(state, last_obs=obs), Outcome.UNCHANGED
        new = replace(state, armed=True, last_obs=obs)
        return new, Outcome.REARMED if not state.armed else Outcome.UNCHANGED
    if not state.armed:
        return replace(state, last_obs=obs), Outcome.UNCHANGED
    if expires_at is not None and at >= expires_at:
        return replace(state, last_obs=obs), Outcome.EXPIRED
    if state.last_fired_at is not None and at < state.last_fired_at + cooldown_s:
        return replace(state, armed=False, last_obs=obs), Outcome.SUPPRESSED
    return AlertState(False, obs, at, snoozed(at, snoozed_until)), Outcome.FIRED
