"""The seed's example, as written (typos fixed): monitor three symbols, alert when AAPL > 150.

Needs a Redis at redis://localhost (the quote cache). Quotes come from the simulated market,
one tick every 5 s; alerts print one line each on the console. Stop with Ctrl-C.
"""

import asyncio

from marketpulse.market.cache import CacheManager
from marketpulse.alerts.rules import AlertCondition, AlertType
from marketpulse.alerts.engine import AlertManager
from marketpulse.market.fetcher import DataFetcher
from marketpulse.alerts.stock_monitor import StockMonitor


async def main():
    data_fetcher = DataFetcher()
    cache_manager = CacheManager("redis://localhost")
    alert_manager = AlertManager()
    monitor = StockMonitor(data_fetcher, cache_manager, alert_manager)

    await alert_manager.add_alert(
        AlertCondition(
            symbol="AAPL",
            alert_type=AlertType.PRICE_THRESHOLD,
            threshold=150.0,
            comparison="above",
        )
    )

    await monitor.start_monitoring(["AAPL", "TCS.NS", "RELIANCE.NS"])

    await asyncio.sleep(3600)
    await monitor.stop_monitoring()


if __name__ == "__main__":
    asyncio.run(main())
