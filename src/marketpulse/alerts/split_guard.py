"""The split guard: a confirmed split re-bases a symbol's alerts before its quote is evaluated.

The engine calls ``SplitGuard.before(quote, obs)`` for each usable quote, under the symbol's
lock, before anything is evaluated (``AlertManager.check_alerts``). It

1. records the observation's price and day and gets the observation before it
   (``AlertStore.observe_price``: one script call per quote);
2. when the quote carries a split (``StockData.splits``) that explains the jump from that
   observation (``splits.confirm``: reported in between, ratio within tolerance), applies it
   once across instances (``AlertStore.apply_split``, one script keyed by (symbol, ex-date)):
   the symbol's price thresholds divided by the ratio, each alert rewritten in the store only
   if unchanged since read, the volume baseline multiplied by the ratio, a ``corporate_action``
   entry in the alert history, published for the dashboards;
3. brings this engine's alerts (the index's and the rule alerts) in line with the stored
   definitions of the symbol (an instance that lost the race reads what the winner wrote) and
   has the engine re-derive the symbol's truths at this observation: truth does not change
   with a re-base (``price / r`` against ``T / r``), so nothing fires or re-arms falsely;
4. returns the quote to evaluate: with its previous close divided by the ratio when it is the
   pre-split one (``splits.rebased_quote``), so percentage change sees no -75 %.

An unconfirmed jump changes nothing here. The indicator books (helper B's ``IndicatorBook``)
are re-based through ``on_split`` callbacks (see ``SplitGuard.on_split``).

Bounded: ``_settled`` keeps the (symbol, ex-date) this instance reconciled, at most ``SETTLED``
(least recent dropped: a dropped one costs one more ``apply_split`` answering "done").
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable

from marketpulse.alerts.rules import AlertCondition
from marketpulse.alerts.splits import (
    CorporateAction,
    Rebased,
    confirm,
    quote_day,
    rebased,
    rebased_quote,
)
from marketpulse.alerts.store import AlertStore, SplitApplied
from marketpulse.market.quotes import Split, StockData

log = logging.getLogger(__name__)

SETTLED = 1024


class SplitGuard:
    def __init__(
        self,
        store: AlertStore,
        *,
        get: Callable[[str], AlertCondition | None],
        hold: Callable[[AlertCondition], None],
        rederive: Callable[[str], None],
    ) -> None:
        self._store = store
        self._get = get  # the engine's held definition of an alert id
        self._hold = hold  # (re)holds a definition where the engine evaluates it
        self._rederive = rederive  # re-derives a symbol's truths at its next observation
        self._settled: OrderedDict[tuple[str, str], None] = OrderedDict()
        # called with (symbol, ratio) once this instance has applied or seen a split: the
        # indicator books re-base there (IndicatorBook.rebase, issue 19 helper B)
        self.on_split: list[Callable[[str, float], None]] = []

    async def before(self, quote: StockData, obs: int) -> StockData:
        """The quote to evaluate at ``obs``, after applying the split it confirms (if any)."""
        previous = await self._store.observe_price(
            quote.symbol, obs=obs, price=quote.price, day=quote_day(quote)
        )
        if previous is None or not quote.splits:
            return quote
        split = confirm(quote, *previous)
        if split is None:
            return quote
        if (quote.symbol, split.date) not in self._settled:
            await self._apply(quote, split, obs, previous[0])
        return rebased_quote(quote, split)

    async def actions(self, symbol: str | None, limit: int) -> list[CorporateAction]:
        """The corporate actions recorded in the alert history, newest first."""
        return await self._store.corporate_actions(symbol, limit)

    async def _apply(self, quote: StockData, split: Split, obs: int, before: float) -> None:
        sym = quote.symbol
        rewrites: list[tuple[str, str, str, str]] = []
        for alert_id, text in (await self._store.raw_alerts()).items():
            alert = AlertCondition.model_validate_json(text)
            new = rebased(alert, split.ratio) if alert.symbol == sym else None
            if new is None:
                continue
            entry = Rebased(
                alert_id=alert_id,
                threshold_before=alert.threshold,
                threshold_after=new.threshold,
            )
            rewrites.append((alert_id, text, new.model_dump_json(), entry.model_dump_json()))
        action = CorporateAction.split(quote, split, obs, before)
        outcome: SplitApplied = await self._store.apply_split(action, rewrites)
        if outcome.applied:
            log.info("%s (observation %d)", action.describe(), obs)
        # this engine's index: the symbol's stored definitions (the winner's rewrites)
        for alert in await self._store.all():
            if alert.symbol == sym and self._get(alert.id) != alert:
                self._hold(alert)
        self._rederive(sym)
        for rebase in self.on_split:
            rebase(sym, split.ratio)
        self._settled[(sym, split.date)] = None
        while len(self._settled) > SETTLED:
            self._settled.popitem(last=False)
