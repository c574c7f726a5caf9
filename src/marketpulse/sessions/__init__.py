"""Portfolio analysis sessions: model, store, runs, valuation, edge."""
