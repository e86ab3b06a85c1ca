"""Positions from fills by the average-cost method. Pure: no ORM, no I/O.

Each fill is one execution on the exchange (side, base quantity, EUR amount at the fill's
price, fee and its EUR value). Per asset, in time order:

- a buy adds its quantity, and its EUR amount plus its fee to the cost;
- a sell realises (proceeds - fee) - average cost x quantity sold, and takes that share of
  the cost away (cost x sold / held, so selling everything leaves exactly zero).

A fee paid in the traded asset itself is paid in coins, not euros: the quantity follows the
account (a buy receives quantity - fee, a sell gives up quantity + fee) and the EUR amount is
what was paid or received, so the fee's cost is in the average cost and the realised profit
without being counted twice; its EUR value (fee x the fill's price) is still in `fees_eur`.

A sell of more than is held (fills the ledger does not have: coins bought elsewhere, or a
fill the exchange never reported) is matched against what is held. The excess has no known
cost, so its part of the proceeds is not profit: it is reported apart (`unmatched_quantity`,
`unmatched_proceeds_eur`), the position is flagged OVERSOLD, and the quantity stays at zero;
it never goes negative.
"""

from __future__ import annotations

import dataclasses
import decimal
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

BUY, SELL = "buy", "sell"
ZERO = Decimal("0")
# Wide enough that no product, quotient or sum of stored values is rounded.
CONTEXT = decimal.Context(prec=60)

OVERSOLD = "OVERSOLD"
FEE_NOT_CONVERTED = "FEE_NOT_CONVERTED"


@dataclass(frozen=True)
class Fill:
    """One fill as the ledger holds it; `fee_eur` is None when it could not be converted."""

    executed_at: datetime
    market: str
    asset: str
    side: str
    quantity: Decimal
    price: Decimal
    amount_eur: Decimal
    fee: Decimal
    fee_currency: str
    fee_eur: Decimal | None
    execution_id: int | None = None
    exchange_order_id: str = ""
    fill_id: str = ""
    history_id: int | None = None  # the history row's id: with executed_at, the fill's place

    @property
    def fee_in_asset(self) -> bool:
        return (self.fee_currency or "EUR").upper() == self.asset.upper()


@dataclass
class Position:
    asset: str
    market: str
    quantity: Decimal = ZERO
    cost_eur: Decimal = ZERO
    realized_pnl_eur: Decimal = ZERO
    fees_eur: Decimal = ZERO
    unmatched_quantity: Decimal = ZERO
    unmatched_proceeds_eur: Decimal = ZERO
    fills: int = 0
    flags: set[str] = field(default_factory=set)

    @property
    def average_cost_eur(self) -> Decimal | None:
        """EUR per unit held; None when nothing is held."""
        if self.quantity <= 0:
            return None
        return CONTEXT.divide(self.cost_eur, self.quantity)

    def apply(self, fill: Fill) -> None:
        fee_eur = fill.fee_eur
        if fee_eur is None:
            # Counted as zero, and said so: the position's figures miss that fee.
            self.flags.add(FEE_NOT_CONVERTED)
            fee_eur = ZERO
        self.fills += 1
        self.market = fill.market
        self.fees_eur = CONTEXT.add(self.fees_eur, fee_eur)
        if fill.fee_in_asset:
            # Paid in coins: fewer received, or more given up; no euro changes hands for it.
            coins_fee, eur_fee = fill.fee, ZERO
        else:
            coins_fee, eur_fee = ZERO, fee_eur
        if fill.side == BUY:
            self.quantity = CONTEXT.add(self.quantity, CONTEXT.subtract(fill.quantity, coins_fee))
            self.cost_eur = CONTEXT.add(self.cost_eur, CONTEXT.add(fill.amount_eur, eur_fee))
            return
        given_up = CONTEXT.add(fill.quantity, coins_fee)
        net_proceeds = CONTEXT.subtract(fill.amount_eur, eur_fee)
        matched = min(given_up, self.quantity)
        if given_up > matched:
            self.flags.add(OVERSOLD)
            excess = CONTEXT.subtract(given_up, matched)
            unmatched = CONTEXT.divide(CONTEXT.multiply(net_proceeds, excess), given_up)
            self.unmatched_quantity = CONTEXT.add(self.unmatched_quantity, excess)
            self.unmatched_proceeds_eur = CONTEXT.add(self.unmatched_proceeds_eur, unmatched)
            net_proceeds = CONTEXT.subtract(net_proceeds, unmatched)
        if matched <= 0:
            return
        cost_sold = CONTEXT.divide(CONTEXT.multiply(self.cost_eur, matched), self.quantity)
        self.realized_pnl_eur = CONTEXT.add(
            self.realized_pnl_eur, CONTEXT.subtract(net_proceeds, cost_sold)
        )
        self.quantity = CONTEXT.subtract(self.quantity, matched)
        self.cost_eur = ZERO if self.quantity == 0 else CONTEXT.subtract(self.cost_eur, cost_sold)


def positions_from_fills(fills, *, start: dict[str, Position] | None = None) -> dict[str, Position]:
    """Per asset, the position after every fill; `fills` must come in time order. `start`,
    the positions after the fills before these (left as they are), goes on with them."""
    positions = {asset: position_copy(p) for asset, p in (start or {}).items()}
    for fill in fills:
        position = positions.get(fill.asset)
        if position is None:
            position = positions[fill.asset] = Position(asset=fill.asset, market=fill.market)
        position.apply(fill)
    return positions


def position_copy(position: Position) -> Position:
    return dataclasses.replace(position, flags=set(position.flags))


# A position kept as JSON: every figure as its exact decimal string, so going on from it
# gives the very figures a replay of every fill gives.
_DECIMALS = (
    "quantity",
    "cost_eur",
    "realized_pnl_eur",
    "fees_eur",
    "unmatched_quantity",
    "unmatched_proceeds_eur",
)


def position_state(position: Position) -> dict:
    state = {name: str(getattr(position, name)) for name in _DECIMALS}
    return state | {
        "asset": position.asset,
        "market": position.market,
        "fills": position.fills,
        "flags": sorted(position.flags),
    }


def position_from_state(state: dict) -> Position:
    return Position(
        asset=state["asset"],
        market=state["market"],
        fills=state["fills"],
        flags=set(state["flags"]),
        **{name: Decimal(state[name]) for name in _DECIMALS},
    )


def realized_between(fills, *, start: datetime, end: datetime) -> Decimal:
    """Profit realised by the sells executed in [start, end), with the average cost each
    had at its time (which depends on every fill before it)."""
    positions: dict[str, Position] = {}
    realized = ZERO
    for fill in fills:
        position = positions.setdefault(fill.asset, Position(asset=fill.asset, market=fill.market))
        before = position.realized_pnl_eur
        position.apply(fill)
        if start <= fill.executed_at < end:
            realized = CONTEXT.add(realized, CONTEXT.subtract(position.realized_pnl_eur, before))
    return realized


def fee_in_eur(
    *, fee: Decimal, fee_currency: str, asset: str, price: Decimal, rate: Decimal | None
) -> Decimal | None:
    """The fee in EUR: as is in EUR; in the traded asset at the fill's own price; in another
    currency at `rate`, that currency's EUR price at the fill's time (None if unknown)."""
    currency = (fee_currency or "EUR").upper()
    if fee == 0 or currency == "EUR":
        return fee
    if currency == asset.upper():
        return CONTEXT.multiply(fee, price)
    if rate is None:
        return None
    return CONTEXT.multiply(fee, rate)
