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
    from marketpulse.adapters.quote_cache import CacheManager
    from marketpulse.api.app import create_app
    from marketpulse.config import Settings
    from marketpulse.domain.alerts import AlertCondition, AlertType
    from marketpulse.domain.quotes import StockData
    from marketpulse.services.alert_engine import AlertManager
    from marketpulse.services.fetcher import DataFetcher
    from marketpulse.services.monitor import StockMonitor

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
    "StockData": "marketpulse.domain.quotes",
    "DataFetcher": "marketpulse.services.fetcher",
    "CacheManager": "marketpulse.adapters.quote_cache",
    "AlertType": "marketpulse.domain.alerts",
    "AlertCondition": "marketpulse.domain.alerts",
    "AlertManager": "marketpulse.services.alert_engine",
    "StockMonitor": "marketpulse.services.monitor",
    "Settings": "marketpulse.config",
    "create_app": "marketpulse.api.app",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'marketpulse' has no attribute {name!r}")
    return getattr(import_module(module), name)
