"""A fired alert: what fired, the observed value and the quote it was decided on (pure)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from marketpulse.alerts.rules import AlertCondition, AlertType
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


class FiredAlert(BaseModel):
    """One firing of one alert. ``id`` is the fire id (the webhook's idempotency key);
    ``deliveries`` maps each channel that delivered it to when (first delivery), ``channels``
    lists those channels in delivery order (filled when history is read)."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    alert_id: str
    symbol: str
    alert_type: AlertType
    comparison: str
    threshold: float
    value: float
    observation: int
    fired_at: datetime
    quote: QuoteUsed
    channels: list[str] = Field(default_factory=list)
    deliveries: dict[str, datetime] = Field(default_factory=dict)
    # issue 20: the channels the alert named when it fired (None: it named none, so the
    # manager's own channels, as before); "cleared": a back-to-normal message
    routes: tuple[str, ...] | None = None
    kind: Literal["fired", "cleared"] = "fired"

    @classmethod
    def of(
        cls, alert: AlertCondition, value: float, quote: StockData, observation: int
    ) -> FiredAlert:
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
            routes=alert.channels,
        )

    def delivered(self, deliveries: dict[str, datetime]) -> FiredAlert:
        """This fire with its deliveries (``channels`` follows them, in delivery order)."""
        order = sorted(deliveries, key=lambda c: (deliveries[c], c))
        return self.model_copy(update={"deliveries": dict(deliveries), "channels": order})

    def describe(self) -> str:
        """One readable line: ``AAPL price_threshold above 150: value 151.2 (price 151.2 …)``."""
        q = self.quote
        return (
            f"ALERT {self.symbol} {self.alert_type.value} {self.comparison} {self.threshold:g}: "
            f"value {self.value:.4g} (price {q.price:.2f}, volume {q.volume}, "
            f"at {q.timestamp.isoformat()}, source {q.source}, age {q.age_s:.1f}s) "
            f"[alert {self.alert_id}]"
        )
