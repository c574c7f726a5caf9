"""marketpulse: live portfolio analysis sessions and price alerts on Redis.

The seed's Python API is importable from here::

    from marketpulse import (StockData, DataFetcher, CacheManager, AlertType, AlertCondition,
                             AlertManager, StockMonitor)

Names resolve lazily, so ``import marketpulse`` stays cheap (yfinance loads only when a
fetcher is first used).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from marketpulse.alerts.engine import AlertManager
    from marketpulse.alerts.rules import AlertCondition, AlertType
    from marketpulse.alerts.stock_monitor import StockMonitor
    from marketpulse.app import create_app
    from marketpulse.config import Settings
    from marketpulse.market.cache import CacheManager
    from marketpulse.market.fetcher import DataFetcher
    from marketpulse.market.quotes import StockData

__all__ = [
    "AlertCondition",
    "AlertManager",
    "AlertType",
    "CacheManager",
    "DataFetcher",
    "Settings",
    "StockData",
    "StockMonitor",
    "create_app",
]

_WHERE = {
    "StockData": "marketpulse.market.quotes",
    "DataFetcher": "marketpulse.market.fetcher",
    "CacheManager": "marketpulse.market.cache",
    "AlertType": "marketpulse.alerts.rules",
    "AlertCondition": "marketpulse.alerts.rules",
    "AlertManager": "marketpulse.alerts.engine",
    "StockMonitor": "marketpulse.alerts.stock_monitor",
    "Settings": "marketpulse.config",
    "create_app": "marketpulse.app",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'marketpulse' has no attribute {name!r}")
    return getattr(import_module(module), name)
