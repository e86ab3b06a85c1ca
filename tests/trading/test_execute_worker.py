"""The execute task on a real Celery worker process, over real Redis, against the simulator.

Duplicate deliveries are the normal case with acks_late: these tests send duplicates and
kill a worker's process mid-order, then count what reached the exchange.
"""

import os
import signal
import socket

import pytest

from config.celery import app
from tests.factories import PolicyFactory, TradeProposalFactory, api_token
from tests.workers import celery_worker, wait_for
from trading.claim import execution_claim
from trading.models import TradeExecution
from trading.reconcile import executions_reconcile

pytestmark = pytest.mark.django_db(transaction=True)


def worker_env(exchange, **extra):
    return {
        "ORACLE_ROLE": "execute",
        "BITVAVO_API_URL": exchange.api_url,
        "BITVAVO_READONLY_KEY": "",
        "BITVAVO_READONLY_SECRET": "",
        **exchange.server.trade_env(),
        **extra,
    }


@pytest.fixture
def purged_queue():
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("execute")
    yield


def test_twenty_duplicate_tasks_on_a_real_worker_give_one_order(exchange, purged_queue):
    policy = PolicyFactory(max_trades_per_hour=50, max_daily_trades=50)
    proposal = TradeProposalFactory(user=policy.user, approved=True)
    claim = execution_claim(proposal=proposal, actor_id=None).execution  # as the web claims

    with celery_worker(queue="execute", env=worker_env(exchange), concurrency=4) as worker:
        for _ in range(20):
            app.send_task("trading.tasks.execute_claim", args=[claim.pk], queue="execute")
        wait_for(lambda: worker.log().count("succeeded in") >= 20, what="20 tasks to finish")

    execution = TradeExecution.objects.get(proposal=proposal)
    assert execution.status == "SUBMITTED"
    orders = exchange.orders()
    assert len(orders) == 1
    assert orders[0]["orderId"] == execution.exchange_order_id


def test_a_worker_killed_while_submitting_is_reconciled_without_a_duplicate(
    exchange, purged_queue, settings
):
    settings.EXECUTION_RECONCILE_AFTER_SECONDS = 0
    policy = PolicyFactory()
    proposal = TradeProposalFactory(user=policy.user, approved=True)
    claim = execution_claim(proposal=proposal, actor_id=None).execution  # as the web claims
    # The exchange takes 3 s to answer: long enough to kill the worker mid-request.
    exchange.control.inject("latency", seconds=3)

    with celery_worker(queue="execute", env=worker_env(exchange), concurrency=1) as worker:
        app.send_task("trading.tasks.execute_claim", args=[claim.pk], queue="execute")
        wait_for(
            lambda: TradeExecution.objects.filter(proposal=proposal, status="SUBMITTING").exists(),
            what="the execution to be SUBMITTING",
        )
        for child in worker.children():
            os.kill(child, signal.SIGKILL)
        # reject_on_worker_lost puts the task back; the new child runs it again.
        wait_for(lambda: "WorkerLostError" in worker.log(), what="the lost worker")
        wait_for(lambda: worker.log().count("succeeded in") >= 1, what="the redelivery")
        wait_for(lambda: len(exchange.orders()) == 1, timeout=10, what="the slow order")

    execution = TradeExecution.objects.get(proposal=proposal)
    assert execution.status == "SUBMITTING", "the redelivered task must not send again"
    executions_reconcile()
    execution.refresh_from_db()
    assert execution.status == "SUBMITTED"
    assert execution.exchange_order_id == exchange.orders()[0]["orderId"]
    assert len(exchange.orders()) == 1


def refusal_to_start(queue, env):
    with pytest.raises(RuntimeError, match="celery exited with") as refused:
        with celery_worker(queue=queue, env=env):
            pass
    return str(refused.value)


def test_an_execute_worker_without_a_trade_key_refuses_to_start(exchange):
    output = refusal_to_start(
        "execute", worker_env(exchange, BITVAVO_TRADE_KEY="", BITVAVO_TRADE_SECRET="")
    )
    assert "Refusing to start the execute worker" in output
    assert "TRADE_KEY_MISSING" in output


def test_a_scan_worker_whose_key_can_trade_refuses_to_start(exchange):
    trade_key, trade_secret = exchange.server.trade_pair
    env = {
        "ORACLE_ROLE": "scan",
        "BITVAVO_API_URL": exchange.api_url,
        "BITVAVO_READONLY_KEY": trade_key,
        "BITVAVO_READONLY_SECRET": trade_secret,
        "BITVAVO_TRADE_KEY": "",
        "BITVAVO_TRADE_SECRET": "",
    }
    output = refusal_to_start("scan", env)
    assert "Refusing to start the scan worker" in output
    assert "MAY TRADE" in output


@pytest.fixture
def broker_down():
    """The broker at a closed port for every publish made through the fast-failing
    connection, until the test says it is back."""
    from notifications import services as notifications

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
    working = app.conf.broker_write_url

    def use(url):
        app.conf.broker_write_url = url
        notifications._broker.cache_clear()

    use(closed)
    yield lambda: use(working)
    use(working)


def test_execute_with_the_broker_down_answers_503_and_strands_no_claim(
    exchange, purged_queue, broker_down
):
    from rest_framework.test import APIClient

    policy = PolicyFactory()
    proposal = TradeProposalFactory(user=policy.user, approved=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(policy.user)}")
    url = f"/api/v1/proposals/{proposal.pk}/execute/"

    down = client.post(url, {}, format="json")

    assert down.status_code == 503
    assert down.json()["code"] == "BROKER_UNAVAILABLE"
    assert not TradeExecution.objects.exists(), "no claim is left waiting for a task"

    broker_down()  # the broker is back: a repeat claims, queues and gives exactly one order
    with celery_worker(queue="execute", env=worker_env(exchange), concurrency=1):
        again = client.post(url, {}, format="json")
        assert again.status_code == 202
        wait_for(
            lambda: TradeExecution.objects.filter(proposal=proposal, status="SUBMITTED").exists(),
            what="the order",
        )
    assert len(exchange.orders()) == 1
