"""Timestamps on the wire: UTC ISO-8601 with ``Z`` (pure)."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_z(dt: datetime) -> str:
    """``2024-01-26T10:00:00.123Z`` (milliseconds; naive datetimes are taken as UTC)."""
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def utc_now() -> datetime:
    return datetime.now(UTC)
