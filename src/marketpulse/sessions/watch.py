"""What a session tells whoever watches its portfolio (pure): a valuation, a committed result,
its deletion. The port ``PortfolioWatch`` is wired by the app (to the alerts' portfolio alerts,
``alerts/portfolio.py``), so the sessions never import the alerts and the alerts never import
the session store (pyproject's import-linter contracts).

Calls are made after the fact (the valuation is stored, the result committed, the session
deleted) and a watcher's failure never fails the caller: the caller logs it and goes on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class ValuedSession:
    """One session valued at ``tick``: ``quantities`` (shares per ticker), ``unit_values`` (the
    value of one share in the base currency: price × rate) and ``total`` (Σ q·u, rounded to
    cents as stored). ``valued_at`` is the sweep's time (UTC ISO-8601)."""

    session_id: str
    tick: int
    valued_at: str
    base_currency: str
    quantities: Mapping[str, float]
    unit_values: Mapping[str, float]
    total: float


@dataclass(frozen=True, slots=True)
class CommittedResult:
    """One ``analysis_result`` committed to a session (the message's fields, docs/contracts.md)."""

    session_id: str
    ticker: str
    metric: str
    value: float | None
    details: Mapping[str, Any]
    result_id: str
    timestamp: str


class PortfolioWatch(Protocol):
    async def watched(self, session_ids: Sequence[str]) -> list[bool]:
        """Which of these sessions have something to watch (the sweep builds a
        ``ValuedSession`` only for those: most sessions have no portfolio alert)."""
        ...

    async def valued(self, sessions: Sequence[ValuedSession]) -> None: ...

    async def result(self, result: CommittedResult) -> None: ...

    async def deleted(self, session_id: str) -> None: ...
