"""A fired alert: what fired, the observed value and the quote it was decided on (pure)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from marketpulse.alerts.rules import AlertCondition, AlertType, Evaluation, why
from marketpulse.market.quotes import StockData


class QuoteUsed(BaseModel):
    """The part of the quote an alert decision rests on."""

    model_config = ConfigDict(frozen=True)

    price: float
    volume: int
    timestamp: datetime
    source: str
    age_s: float
    previous_close: float | None = None


class PortfolioDetail(BaseModel):
    """What a portfolio alert's fire adds (docs/alerts.md, "Portfolio alerts"): the kind of
    condition, the session's base currency and the holdings that drove it, largest first."""

    model_config = ConfigDict(frozen=True)

    kind: str
    base_currency: str
    contributors: list[dict[str, str | float | None]] = Field(default_factory=list)


class FiredAlert(BaseModel):
    """One firing of one alert. ``id`` is the fire id (the webhook's idempotency key);
    ``deliveries`` maps each channel that delivered it to when (first delivery), ``channels``
    lists those channels in delivery order (filled when history is read). ``muted``: fired
    while the alert was snoozed, so recorded in history but never delivered. ``values`` holds
    each observed value by label (an all_of's clauses; ``value`` is then None) and ``why`` the
    readable reason ("RSI(14) 71.2 >= 70 and price 2810 >= 2800"). A portfolio alert's fire
    carries its ``session_id`` and ``portfolio`` (what drove it); its ``quote`` is the
    portfolio's valuation (``price`` the total value in the base currency, ``source``
    ``portfolio``)."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    alert_id: str
    symbol: str
    alert_type: AlertType
    comparison: str
    threshold: float
    value: float | None
    observation: int
    fired_at: datetime
    quote: QuoteUsed
    channels: list[str] = Field(default_factory=list)
    deliveries: dict[str, datetime] = Field(default_factory=dict)
    muted: bool = False
    values: dict[str, float | None] = Field(default_factory=dict)
    why: str = ""
    session_id: str | None = None
    portfolio: PortfolioDetail | None = None
    # issue 20: the channels the alert named when it fired (None: it named none, so the
    # manager's own channels, as before); "cleared": a back-to-normal message
    routes: tuple[str, ...] | None = None
    kind: Literal["fired", "cleared"] = "fired"

    @classmethod
    def of(
        cls,
        alert: AlertCondition,
        value: float | None,
        quote: StockData,
        observation: int,
        *,
        ev: Evaluation | None = None,
        muted: bool = False,
    ) -> FiredAlert:
        """``alert`` firing at ``quote``; ``ev`` (when evaluated by ``rules.evaluate``) gives
        the values and the reason, else they are made from ``value``."""
        if ev is None:
            ev = Evaluation(True, False, value, ((alert.label, value),))
        return cls(
            alert_id=alert.id,
            symbol=alert.symbol,
            alert_type=alert.alert_type,
            comparison=alert.comparison,
            threshold=alert.threshold,
            value=value,
            observation=observation,
            fired_at=quote.timestamp,
            quote=QuoteUsed(
                price=quote.price,
                volume=quote.volume,
                timestamp=quote.timestamp,
                source=quote.source,
                age_s=quote.age_s,
                previous_close=quote.previous_close,
            ),
            muted=muted,
            values=dict(ev.values),
            why=why(alert, ev),
            routes=alert.channels,
        )

    def delivered(self, deliveries: dict[str, datetime]) -> FiredAlert:
        """This fire with its deliveries (``channels`` follows them, in delivery order)."""
        order = sorted(deliveries, key=lambda c: (deliveries[c], c))
        return self.model_copy(update={"deliveries": dict(deliveries), "channels": order})

    def describe(self) -> str:
        """One readable line: ``AAPL price_threshold above 150: value 151.2 (price 151.2 …)``."""
        q = self.quote
        value = f"value {self.value:.4g}" if self.value is not None else self.why
        muted = "MUTED (snoozed) " if self.muted else ""
        return (
            f"{muted}ALERT {self.symbol} {self.alert_type.value} {self.comparison} "
            f"{self.threshold:g}: {value} (price {q.price:.2f}, volume {q.volume}, "
            f"at {q.timestamp.isoformat()}, source {q.source}, age {q.age_s:.1f}s) "
            f"[alert {self.alert_id}]"
        )
