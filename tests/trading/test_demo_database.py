"""The zero-setup demo runs on SQLite. Its execute path (the facts, the claim and the finish
read and written through the ORM there, one statement at a time) places one order per
proposal and records it, in real processes against the simulator."""

from tests.workers import sqlite_demo

SETUP = """
import django; django.setup()
from django.contrib.auth import get_user_model
from exchange.services import balances_refresh
from trading.services import proposal_approve, proposal_create
user = get_user_model().objects.get(username="demo")
balances_refresh()
proposal = proposal_create(
    user=user, market="BTC-EUR", side="buy", amount_eur="25", confidence=75, source="api"
)
proposal_approve(proposal=proposal, actor=user)
print(proposal.pk)
"""

REPORT = """
import django; django.setup()
from trading.models import TradeExecution, TradeHistory
(execution,) = TradeExecution.objects.all()
print(execution.status, execution.exchange_order_id, TradeHistory.objects.count())
"""


def test_the_demo_database_executes_a_proposal_once(simulator, tmp_path):
    simulator.control.reset()
    run = sqlite_demo(
        tmp_path,
        {
            "ORACLE_ROLE": "execute",
            "BITVAVO_API_URL": simulator.api_url,
            **simulator.readonly_env(),
            **simulator.trade_env(),
        },
    )
    proposal_id = run("-c", SETUP)

    first = run("manage.py", "execute_proposal", proposal_id)
    repeat = run("manage.py", "execute_proposal", proposal_id)

    assert "SUBMITTED" in first and "(new)" in first
    assert "SUBMITTED" in repeat and "(existing)" in repeat
    (order,) = simulator.control.orders()
    status, order_id, history_rows = run("-c", REPORT).split()
    assert (status, order_id, history_rows) == ("SUBMITTED", order["orderId"], "1")
