"""Fills written as trade history rows, with the figures a test states."""

import uuid
from decimal import Decimal

import pytest

from tests.factories import TradeHistoryFactory

# The notification tests' fixtures: the notify queue, a local webhook receiver, settings.
from tests.notifications.test_notifications import notify_queue, notify_settings, webhook  # noqa: F401


def history(user, market, side, amount, price, fee, at, *, fee_currency=None, order_id=None):
    """One fill: `amount` of the base asset at `price`, its EUR amount their product."""
    amount, price = Decimal(amount), Decimal(price)
    return TradeHistoryFactory(
        execution__proposal__user=user,
        execution__proposal__market=market,
        execution__proposal__side=side,
        execution__exchange_order_id=order_id or str(uuid.uuid4()),
        execution__bitvavo_response={"feeCurrency": fee_currency} if fee_currency else None,
        amount=amount,
        amount_eur=amount * price,
        price=price,
        fee=Decimal(fee),
        executed_at=at,
    )


@pytest.fixture
def priced(exchange):
    """The simulator over HTTP with fixed last prices for BTC-EUR and ETH-EUR."""
    exchange.control.set_price("BTC-EUR", "55000")
    exchange.control.set_price("ETH-EUR", "2400")
    return exchange
