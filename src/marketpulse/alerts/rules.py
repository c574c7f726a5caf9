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

Times are market time: the quote's timestamp, so replays are deterministic.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from marketpulse.market.quotes import StockData
from marketpulse.market.symbols import parse_symbol

VOLUME_WINDOW = 20
COMPARISONS = ("above", "below")
ALERT_ID_PATTERN = r"^[A-Za-z0-9_\-]{1,64}$"
ALERT_ID_RE = re.compile(ALERT_ID_PATTERN)


def new_alert_id() -> str:
    return uuid.uuid4().hex


class AlertType(Enum):
    PRICE_THRESHOLD = "price_threshold"
    PERCENTAGE_CHANGE = "percentage_change"
    VOLUME_SPIKE = "volume_spike"


class AlertCondition(BaseModel):
    """One alert definition (the seed's fields plus id, cooldown and expiry)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    symbol: str
    alert_type: AlertType
    threshold: float
    comparison: str
    id: str = Field(default_factory=new_alert_id)
    cooldown_s: float = Field(default=0.0, ge=0)
    expires_at: datetime | None = None
    channels: tuple[str, ...] | None = Field(
        default=None,
        description=(
            "the channels a fire goes to: named channels (/api/channels) and the built-in"
            " console, websocket and webhook; unset: the built-in ones (as before channels)"
        ),
        json_schema_extra={
            "items": {"type": "string", "pattern": r"^[a-z0-9][a-z0-9_\-]{0,31}$"},
            "maxItems": 8,
            "uniqueItems": True,
        },
    )

    @field_validator("symbol", mode="before")
    @classmethod
    def _symbol(cls, v: object) -> str:
        return parse_symbol(v)

    @field_validator("alert_type", mode="before")
    @classmethod
    def _alert_type(cls, v: object) -> object:
        if isinstance(v, AlertType):
            return v
        known = [t.value for t in AlertType]
        if isinstance(v, str) and v.strip().lower() in known:
            return AlertType(v.strip().lower())
        raise ValueError(f"unknown alert type {v!r}; choose one of {', '.join(known)}")

    @field_validator("comparison", mode="before")
    @classmethod
    def _comparison(cls, v: object) -> str:
        if isinstance(v, str) and v.strip().lower() in COMPARISONS:
            return v.strip().lower()
        raise ValueError(f"comparison must be 'above' or 'below', got {v!r}")

    @field_validator("threshold")
    @classmethod
    def _threshold(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("threshold must be a finite number (not NaN or infinity)")
        if v < 0:
            raise ValueError(f"threshold must be >= 0, got {v}")
        return v

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not ALERT_ID_RE.fullmatch(v):
            raise ValueError("id must be 1-64 characters of letters, digits, '_' or '-'")
        return v

    @property
    def direction(self) -> Literal["above", "below"]:
        return "above" if self.comparison == "above" else "below"

    @field_validator("channels")
    @classmethod
    def _channels(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if v is None else check_routes(v)


def observed_value(
    alert_type: AlertType, quote: StockData, volumes: list[int] | None = None
) -> float | None:
    """The value an alert of this type compares to its threshold, or None (no baseline).

    For ``percentage_change`` with ``below`` the caller negates the sign (see ``holds``).
    ``volumes`` are the earlier observed volumes, oldest first (only the last 20 are used).
    """
    if alert_type is AlertType.PRICE_THRESHOLD:
        return quote.price
    if alert_type is AlertType.PERCENTAGE_CHANGE:
        base = quote.previous_close if quote.previous_close is not None else quote.close
        if not math.isfinite(base) or base <= 0:
            return None
        return 100.0 * (quote.price - base) / base
    window = (volumes or [])[-VOLUME_WINDOW:]
    if len(window) < VOLUME_WINDOW:
        return None
    mean = sum(window) / VOLUME_WINDOW
    return quote.volume / mean if mean > 0 else None


def signed(alert_type: AlertType, comparison: str, value: float) -> float:
    """The value in the alert's own orientation: a fall is positive for ``% change below``."""
    if alert_type is AlertType.PERCENTAGE_CHANGE and comparison == "below":
        return -value
    return value


def holds(condition: AlertCondition, value: float) -> bool:
    """Whether the condition is true at ``value`` (the raw observed value)."""
    v = signed(condition.alert_type, condition.comparison, value)
    t = condition.threshold
    if condition.alert_type is AlertType.PERCENTAGE_CHANGE:
        return v >= t  # magnitudes: both directions are "at least T % that way"
    return v >= t if condition.comparison == "above" else v <= t


def usable(quote: StockData) -> bool:
    """A quote that may drive alerts: fresh and sane."""
    return not quote.stale and quote.is_sane()


class Outcome(Enum):
    FIRED = "fired"
    SUPPRESSED = "suppressed"  # became true inside the cooldown
    EXPIRED = "expired"
    REARMED = "rearmed"
    UNCHANGED = "unchanged"
    DUPLICATE = "duplicate"  # this observation was already applied (another instance)
    GONE = "gone"  # the alert was deleted meanwhile


@dataclass(frozen=True, slots=True)
class AlertState:
    """Armed/fired state of one alert, as stored."""

    armed: bool = True
    last_obs: int | None = None
    last_fired_at: float | None = None  # epoch seconds, market time


def transition(
    state: AlertState,
    *,
    obs: int,
    truth: bool,
    at: float,
    cooldown_s: float,
    expires_at: float | None,
) -> tuple[AlertState, Outcome]:
    """Apply one observation to an alert's state (the reference for the Lua script).

    Idempotent per observation: an ``obs`` at or before ``last_obs`` changes nothing.
    """
    if state.last_obs is not None and obs <= state.last_obs:
        return state, Outcome.DUPLICATE
    if not truth:
        new = AlertState(True, obs, state.last_fired_at)
        return new, Outcome.REARMED if not state.armed else Outcome.UNCHANGED
    if not state.armed:
        return AlertState(False, obs, state.last_fired_at), Outcome.UNCHANGED
    if expires_at is not None and at >= expires_at:
        return AlertState(True, obs, state.last_fired_at), Outcome.EXPIRED
    if state.last_fired_at is not None and at < state.last_fired_at + cooldown_s:
        return AlertState(False, obs, state.last_fired_at), Outcome.SUPPRESSED
    return AlertState(False, obs, at), Outcome.FIRED


# -- delivery routes (issue 20: alerts/channels.py has the named channels) ------------------------

BUILTIN_CHANNELS: tuple[str, ...] = ("console", "websocket", "webhook")
CHANNEL_NAME_PATTERN = r"^[a-z0-9][a-z0-9_\-]{0,31}$"
CHANNEL_NAME_RE = re.compile(CHANNEL_NAME_PATTERN)
MAX_ROUTES = 8


def check_routes(names: tuple[str, ...]) -> tuple[str, ...]:
    """An alert's channel names: each a channel name, no repeats, at most ``MAX_ROUTES``."""
    if len(names) > MAX_ROUTES:
        raise ValueError(f"at most {MAX_ROUTES} channels per alert, got {len(names)}")
    for name in names:
        if not CHANNEL_NAME_RE.fullmatch(name):
            raise ValueError(
                f"channel {name!r} is not a channel name (1-32 of a-z, 0-9, '_', '-';"
                " starting with a letter or digit)"
            )
    if len(set(names)) != len(names):
        raise ValueError("a channel is named twice")
    return names
