"""Shared infrastructure: the Redis boundary, WebSocket plumbing, retry and limits."""
