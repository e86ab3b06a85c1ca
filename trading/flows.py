"""What the users' fills moved in the shared exchange account, per asset, kept as they happen.

A fill moves the account as the exchange moves it: a buy receives its quantity of the asset
and pays its EUR amount, a sell the reverse, and the fee leaves in its own currency. The
sums over every fill ever recorded are rows of `account_flows`, added to in the transaction
that writes the fills (trading/finish.py), so the holdings check (ops/report.py) reads one
row per asset however many years of history there are. Sums are exact: no rounding, only
additions of stored values.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal

from django.db.models import Case, DecimalField, F, Subquery, Value, When
from django.utils import timezone

from trading.ledger import BUY, Fill
from trading.models import AccountFlow, TradeHistory

AMOUNT = DecimalField(max_digits=40, decimal_places=12)


def fill_flows(
    *, market: str, asset: str, side: str, quantity, amount_eur, fee, fee_currency: str
) -> dict[str, Decimal]:
    """One fill's moves per asset. A fee without a currency of its own is in the quote."""
    quote = market.split("-")[-1].upper()
    sign = 1 if side == BUY else -1
    flows: dict[str, Decimal] = defaultdict(Decimal)
    flows[asset.upper()] += sign * quantity
    flows[quote] -= sign * amount_eur
    flows[(fee_currency or quote).upper()] -= fee
    return flows


def fills_flows(fills: Iterable[Fill]) -> dict[str, Decimal]:
    """The moves of ledger fills (trading.selectors.history_fills), summed per asset."""
    return _summed(
        fill_flows(
            market=fill.market,
            asset=fill.asset,
            side=fill.side,
            quantity=fill.quantity,
            amount_eur=fill.amount_eur,
            fee=fill.fee,
            fee_currency=fill.fee_currency,
        )
        for fill in fills
    )


def _summed(moves: Iterable[dict[str, Decimal]]) -> dict[str, Decimal]:
    total: dict[str, Decimal] = defaultdict(Decimal)
    for one in moves:
        for asset, amount in one.items():
            total[asset] += amount
    return total


def account_flows_add(rows: Iterable[TradeHistory], *, order_fee_currency: str = "") -> None:
    """Adds the moves of newly written history `rows` to the sums, in the caller's
    transaction: one UPDATE, plus an insert the first time an asset is seen."""
    moves = _summed(
        fill_flows(
            market=row.market,
            asset=row.asset,
            side=row.side,
            quantity=row.amount,
            amount_eur=row.amount_eur,
            fee=row.fee,
            # As trading.selectors.history_fills reads it back: the fill's, else the order's.
            fee_currency=row.fee_currency or order_fee_currency,
        )
        for row in rows
    )
    if not moves:
        return
    change = uuid.uuid4()
    if _increment(moves, change) == len(moves):
        return
    # An asset's first fill: its row is created (at zero, once, whoever of several
    # concurrent adders gets there first), then given the moves this update did not reach.
    # Rows a concurrent adder committed after the update began were not reached either: the
    # rows reached are exactly those carrying this change, locked by it until commit.
    reached = set(
        AccountFlow.objects.filter(asset__in=moves, last_change=change).values_list(
            "asset", flat=True
        )
    )
    missing = {asset: move for asset, move in moves.items() if asset not in reached}
    AccountFlow.objects.bulk_create(
        [AccountFlow(asset=asset) for asset in missing], ignore_conflicts=True
    )
    _increment(missing, change)


def _increment(moves: dict[str, Decimal], change: uuid.UUID) -> int:
    """amount += move for every asset of `moves` that has its row, in one statement. The
    rows are locked in asset order first: finishes that update the same rows in another
    order (a scan's, which follows where the rows lie) could deadlock."""
    added = Case(
        *(When(asset=name, then=Value(move, output_field=AMOUNT)) for name, move in moves.items()),
        default=Value(Decimal("0"), output_field=AMOUNT),
        output_field=AMOUNT,
    )
    in_order = AccountFlow.objects.filter(asset__in=moves).order_by("asset").select_for_update()
    return AccountFlow.objects.filter(pk__in=Subquery(in_order.values("pk"))).update(
        amount=F("amount") + added, last_change=change, updated_at=timezone.now()
    )


def account_flows_rebuild(*, history=TradeHistory, flows=AccountFlow) -> None:
    """Sets the sums from every fill: the migration that adds them (with its historical
    models), and a benchmark that writes history in SQL."""
    from trading.selectors import history_fills  # selectors read the kept sums back

    total = fills_flows(history_fills(history.objects.all()))
    flows.objects.all().delete()
    flows.objects.bulk_create([flows(asset=name, amount=amount) for name, amount in total.items()])
