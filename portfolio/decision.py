"""The decision screen's holding (trading/decision.py): the owner's position in the
proposal's asset from our own ledger, now and after the trade."""

from __future__ import annotations

from portfolio.selectors import fills_list
from trading.decision import ExpectedFill, Holding, decision_part
from trading.ledger import BUY, CONTEXT, ZERO, positions_from_fills
from trading.models import TradeProposal
from trading.validators import asset_of


@decision_part("holding")
def proposal_holding(proposal: TradeProposal, *, fill: ExpectedFill | None) -> Holding:
    asset = asset_of(proposal.market)
    fills = [f for f in fills_list(user=proposal.user) if f.asset == asset]
    position = positions_from_fills(fills).get(asset)
    quantity = position.quantity if position else ZERO
    after = None
    if fill is not None:
        change = fill.quantity if proposal.side == BUY else -fill.quantity
        # A sell of more than is held leaves nothing, not a negative holding (the ledger's rule).
        after = max(ZERO, CONTEXT.add(quantity, change))
    return Holding(
        asset=asset,
        quantity=quantity,
        average_cost_eur=position.average_cost_eur if position else None,
        value_eur=None if fill is None else CONTEXT.multiply(quantity, fill.price),
        quantity_after=after,
        flags=tuple(sorted(position.flags)) if position else (),
    )
