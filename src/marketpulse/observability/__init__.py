"""Observability: Prometheus, health warnings, system report, logs, dashboard."""
