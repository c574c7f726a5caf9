"""Market data: quotes, ticks, providers, fetch policy, cache."""
