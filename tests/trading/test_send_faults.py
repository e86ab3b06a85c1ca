"""Sends and reconciles on real Celery workers, over real Redis and PostgreSQL, against the
simulator: the database connection cut mid-order, and slow lookups with many undecided
rows next to a fresh order."""

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from config.celery import app
from exchange.models import ExchangeCall
from exchange.transport import clock_offset_known
from ops.report import report_build
from tests.factories import PolicyFactory, TradeExecutionFactory, TradeProposalFactory
from tests.workers import celery_worker, wait_for
from trading.claim import execution_claim
from trading.models import TradeExecution
from trading.reconcile import executions_reconcile

pytestmark = pytest.mark.django_db(transaction=True)

WORKER_APP = "oracle-send-under-test"


def worker_env(exchange, **extra):
    return {
        "ORACLE_ROLE": "execute",
        "BITVAVO_API_URL": exchange.api_url,
        "BITVAVO_READONLY_KEY": "",
        "BITVAVO_READONLY_SECRET": "",
        "PGAPPNAME": WORKER_APP,  # libpq names the worker's connections: cut only those
        **exchange.server.trade_env(),
        **extra,
    }


def purge(*queues):
    with app.connection_for_write() as conn:
        for queue in queues:
            conn.default_channel.queue_purge(queue)


def cut_worker_connections() -> int:
    """pg_terminate_backend of every connection the worker holds: a real cut."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = %s",
            [WORKER_APP],
        )
        return cursor.fetchone()[0]


def claimed(policy):
    proposal = TradeProposalFactory(user=policy.user, approved=True)
    return execution_claim(proposal=proposal, actor_id=None).execution  # as the web claims


@pytest.mark.parametrize("point", ["order_in_flight", "waiting_for_fills"])
def test_the_order_call_is_recorded_whatever_connection_is_cut(exchange, settings, point):
    purge("execute")
    settings.EXECUTION_RECONCILE_AFTER_SECONDS = 0
    policy = PolicyFactory(max_trades_per_hour=50, max_daily_trades=50, cooldown_minutes=0)
    execution = claimed(policy)
    if point == "order_in_flight":
        exchange.control.inject("latency", seconds=3)
    else:  # answered before its fills; the worker looks it up until they come
        exchange.control.set_fill_mode(answer="new", settle_after_seconds=3)
    env = worker_env(exchange, EXECUTION_FILL_WAIT_SECONDS="6")

    with celery_worker(queue="execute", env=env, concurrency=1) as worker:
        app.send_task("trading.tasks.execute_claim", args=[execution.pk], queue="execute")
        wait_for(
            lambda: TradeExecution.objects.filter(pk=execution.pk, status="SUBMITTING").exists(),
            what="the execution to be SUBMITTING",
        )
        if point == "waiting_for_fills":
            wait_for(lambda: len(exchange.orders()) == 1, what="the order, before its fills")
        assert cut_worker_connections() >= 1
        wait_for(
            lambda: (
                "execute_claim" in worker.log()
                and ("succeeded in" in worker.log() or "raised unexpected" in worker.log())
            ),
            what="the task to end",
        )

    (order,) = exchange.orders()
    calls = ExchangeCall.objects.filter(method="POST", client_order_id=execution.client_order_id)
    assert [(c.path, c.status_code, c.response_body["orderId"]) for c in calls] == [
        ("/v2/order", 200, order["orderId"])
    ]
    executions_reconcile()  # whatever the cut left undecided
    execution.refresh_from_db()
    assert (execution.status, execution.exchange_order_id) == ("SUBMITTED", order["orderId"])
    report = report_build(
        since=execution.claimed_at,
        until=execution.finished_at,
        markets=[execution.market],
        orders=exchange.orders(),
    )
    assert (report.orders_at_exchange, report.orders_without_call) == (1, [])


def test_slow_lookups_never_delay_an_order_and_every_stuck_row_gets_its_turn(exchange):
    purge("execute", "reconcile")
    stuck = [
        TradeExecutionFactory(
            status="SUBMITTING", submitting_at=timezone.now() - timedelta(minutes=5)
        )
        for _ in range(5)
    ]
    # Every lookup by client order id takes 3 s; a run may start a row within its first
    # second: one row a run, whatever the number of stuck rows.
    exchange.control.inject("latency", seconds=3, method="GET", path="/order", times=100)
    env = worker_env(exchange, EXECUTION_RECONCILE_MAX_SECONDS="1")
    policy = PolicyFactory(max_trades_per_hour=50, max_daily_trades=50, cooldown_minutes=0)

    with (
        celery_worker(queue="reconcile", env=env, concurrency=1, name="r") as reconciler,
        celery_worker(queue="execute", env=env, concurrency=1, name="x") as executor,
    ):
        runs = len(stuck)
        for _ in range(runs):  # as beat publishes it, by its route
            app.send_task("trading.tasks.reconcile_submitting_executions")
        wait_for(lambda: "reconcile_submitting_executions" in reconciler.log(), what="a run")
        execution = claimed(policy)
        app.send_task("trading.tasks.execute_claim", args=[execution.pk])
        wait_for(
            lambda: TradeExecution.objects.filter(pk=execution.pk, status="SUBMITTED").exists(),
            what="the fresh execution to be SUBMITTED",
        )
        execution.refresh_from_db()
        runs_done = reconciler.log().count("succeeded in")
        wait_for(
            lambda: reconciler.log().count("succeeded in") == runs,
            timeout=120,
            what=f"{runs} reconcile runs",
        )
        assert "reconcile_submitting_executions[" not in executor.log()

    assert runs_done < runs, "the order did not wait for the reconciler"
    # Normal latency: claim to SUBMITTED without waiting for any lookup (each takes 3 s).
    assert execution.finished_at - execution.claimed_at < timedelta(seconds=3)
    tried = TradeExecution.objects.filter(pk__in=[e.pk for e in stuck])
    assert all(e.last_reconciled_at is not None for e in tried), "a row never got its turn"
    assert sorted(e.reconcile_attempts for e in tried) == [1] * len(stuck)


@pytest.mark.parametrize("skew_ms", [15_000, -15_000])
def test_workers_start_with_a_compensated_drift_warn_and_trade(exchange, skew_ms):
    purge("execute", "reconcile")
    exchange.control.set_clock_skew(skew_ms)
    cache.clear()  # nothing learned of the clock yet, as on a fresh start
    policy = PolicyFactory(max_trades_per_hour=50, max_daily_trades=50, cooldown_minutes=0)
    env = worker_env(exchange)

    with (
        celery_worker(queue="reconcile", env=env, concurrency=1, name="r") as reconciler,
        celery_worker(queue="execute", env=env, concurrency=1, name="x") as executor,
    ):
        for worker in (reconciler, executor):
            assert "compensated in every signed request" in worker.log()
        execution = claimed(policy)
        app.send_task("trading.tasks.execute_claim", args=[execution.pk])
        wait_for(
            lambda: TradeExecution.objects.filter(pk=execution.pk, status="SUBMITTED").exists(),
            what="the order, on the skewed exchange",
        )
    assert abs(clock_offset_known() - skew_ms) < 1_000, "the metric's figure"
    assert len(exchange.orders()) == 1
