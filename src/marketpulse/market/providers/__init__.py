"""Market data sources. Tick-addressed ones (``simulated``, ``replay``) are built here."""

from __future__ import annotations

from marketpulse.market.ports import TickSource
from marketpulse.market.providers.replay import ReplaySource
from marketpulse.market.providers.simulated import SimulatedSource

__all__ = ["ReplaySource", "SimulatedSource", "make_tick_source"]


def make_tick_source(name: str, *, seed: int, replay_start: str, replay_step: int) -> TickSource:
    """The tick-addressed source called ``name``; ``ValueError`` for any other name."""
    if name == "simulated":
        return SimulatedSource(seed=seed)
    if name == "replay":
        return ReplaySource(start=replay_start, step=replay_step)
    raise ValueError(f"{name!r} is not a tick-addressed market source; use simulated or replay")
