"""Adapters: Redis stores and Lua, market data sources, notifiers, the embedded redis-server."""
