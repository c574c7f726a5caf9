"""The market as the analysis sees it: bars addressed by a tick of the market clock.

There is one market for the whole service. The valuation leader advances the tick (stored in
Redis); at a given tick every session sees the same bar for a symbol. A tick-addressed source is
pure: the same (symbol, tick) always gives the same bar, so any instance can compute it.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from marketpulse.market.quotes import Bar

FloatArray = npt.NDArray[np.float64]


class TickSource(Protocol):
    """A deterministic market addressed by tick (``simulated``, ``replay``).

    ``bar(symbol, tick)`` is the bar the market shows at that tick; ``history(symbol, tick, n)``
    is up to ``n`` bars ending at that tick (inclusive), oldest first. Unknown symbols raise
    ``PermanentSourceError``; a tick before the symbol's first bar raises it too.
    """

    name: str

    def knows(self, symbol: str) -> bool: ...

    def bar(self, symbol: str, tick: int) -> Bar: ...

    def history(self, symbol: str, tick: int, n: int) -> list[Bar]: ...
