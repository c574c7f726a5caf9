"""Fresh quotes on Redis pub/sub, for every instance's dashboard sockets.

The monitor (one poller across instances, see ``alerts/monitor.py``) publishes each quote it
observes on ``keys.QUOTE_EVENTS_ALL``; each instance's ``EventHub`` fans the channel out to its
``/ws/dashboard`` connections, which forward the payload as is. The payload is already the
wire frame, ``{"type": "quote", ...StockData JSON}``, so forwarding parses nothing.
"""

from __future__ import annotations

from marketpulse.infra.redis import keys
from marketpulse.infra.redis.client import RedisClient
from marketpulse.market.quotes import StockData, quote_frame


class RedisQuotePublisher:
    """PUBLISH each observed quote as a dashboard frame (fire and forget: pub/sub keeps none)."""

    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis

    async def publish(self, quote: StockData) -> None:
        """Raises ``RedisUnavailable`` if Redis did not take it."""
        await self._redis.publish(keys.QUOTE_EVENTS_ALL, quote_frame(quote))
