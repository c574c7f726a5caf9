"""The seed's example usage, as written (typos fixed): watch four symbols for an hour.

Run it with ``uv run python examples/seed_example.py``. The components read the service's
settings: the Redis at ``MARKETPULSE_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``) keeps
the quote cache, the two alerts and their history; quotes come from ``MARKETPULSE_DATA_SOURCE``
(default the simulated market, seed ``MARKETPULSE_SEED``), a new market tick every
``MARKETPULSE_MARKET_INTERVAL`` seconds. A fired alert prints one ``ALERT ...`` line.

The typos fixed: ``add_alert`` and ``stop_monitoring`` are coroutines, so they are awaited
(awaited, ``stop_monitoring()`` returns once the loop has stopped; called plainly, as the seed
wrote it, it only asks the loop to stop). ``MARKETPULSE_EXAMPLE_SECONDS`` (default 3600)
shortens the hour.
"""

import asyncio
import os

from marketpulse import (
    AlertCondition,
    AlertManager,
    AlertType,
    CacheManager,
    DataFetcher,
    StockMonitor,
)

RUN_SECONDS = float(os.environ.get("MARKETPULSE_EXAMPLE_SECONDS", "3600"))


async def main():
    # Initialize components
    fetcher = DataFetcher()
    cache = CacheManager()
    alert_manager = AlertManager()
    monitor = StockMonitor(fetcher, cache, alert_manager)
    # Add some alerts
    await alert_manager.add_alert(
        AlertCondition(
            symbol="AAPL",
            alert_type=AlertType.PRICE_THRESHOLD,
            threshold=150.0,
            comparison="above",
        )
    )
    await alert_manager.add_alert(
        AlertCondition(
            symbol="TCS.NS",
            alert_type=AlertType.PERCENTAGE_CHANGE,
            threshold=5.0,
            comparison="above",
        )
    )
    # Start monitoring
    await monitor.start_monitoring(["AAPL", "GOOGL", "TCS.NS", "INFY.NS"])
    # Run for some time
    await asyncio.sleep(RUN_SECONDS)
    # Stop monitoring
    await monitor.stop_monitoring()


if __name__ == "__main__":
    asyncio.run(main())
