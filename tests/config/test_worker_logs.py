"""Structured logs from real worker processes: with LOG_FORMAT=json every log line is one
JSON object, and each worker event carries the ids of what it is about."""

import json
import re

import pytest
from django.utils import timezone

from config.celery import app
from scheduler.services import scan_jobs_dispatch_due
from tests.factories import PolicyFactory, ScanJobFactory, TradeProposalFactory
from tests.workers import celery_worker, wait_for
from trading.claim import execution_claim
from trading.models import TradeExecution, TradeProposal

pytestmark = pytest.mark.django_db(transaction=True)

TEXT_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z]+ ")


def json_lines(log: str) -> list[dict]:
    """Every log record of the worker, parsed; fails on a log line that is not JSON."""
    assert not [line for line in log.splitlines() if TEXT_LOG_LINE.match(line)]
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def events(log: str, name: str) -> list[dict]:
    return [entry for entry in json_lines(log) if entry.get("event") == name]


@pytest.fixture
def purged_queues():
    with app.connection_for_write() as conn:
        for queue in ("execute", "scan"):
            conn.default_channel.queue_purge(queue)


def test_an_execute_worker_logs_submitted_and_refused_as_json_with_ids(exchange, purged_queues):
    policy = PolicyFactory(allowlist=["BTC-EUR", "ETH-EUR"])
    passes = TradeProposalFactory(user=policy.user, approved=True)
    refused = TradeProposalFactory(user=policy.user, market="ETH-EUR", approved=True)
    # Both claimed (as the web process does); one expires before the worker sends it.
    claims = [execution_claim(proposal=p, actor_id=None).execution for p in (passes, refused)]
    TradeProposal.objects.filter(pk=refused.pk).update(expires_at=timezone.now())
    env = {
        "ORACLE_ROLE": "execute",
        "LOG_FORMAT": "json",
        "BITVAVO_API_URL": exchange.api_url,
        "BITVAVO_READONLY_KEY": "",
        "BITVAVO_READONLY_SECRET": "",
        **exchange.server.trade_env(),
    }
    with celery_worker(queue="execute", env=env, concurrency=1) as worker:
        for claim in claims:
            app.send_task("trading.tasks.execute_claim", args=[claim.pk], queue="execute")
        wait_for(lambda: worker.log().count("succeeded in") >= 2, what="both tasks")
        log = worker.log()

    execution = TradeExecution.objects.get(proposal=passes)
    assert execution.status == "SUBMITTED"
    (submitted,) = events(log, "execution.submitted")
    assert submitted["execution_id"] == execution.pk
    assert submitted["proposal_id"] == passes.pk
    assert submitted["user_id"] == policy.user_id
    assert submitted["exchange_order_id"] == execution.exchange_order_id
    assert submitted["level"] == "INFO" and submitted["logger"] == "trading.finish"

    (refusal,) = events(log, "preflight.refused")
    assert refusal["proposal_id"] == refused.pk
    assert refusal["user_id"] == policy.user_id
    assert refusal["codes"] == ["PROPOSAL_EXPIRED"]
    assert refusal["level"] == "WARNING"
    # Celery's own records go through the same formatter.
    assert any("ready." in entry["message"] for entry in json_lines(log))


def test_a_scan_worker_logs_the_finished_scan_as_json_with_its_ids(exchange, purged_queues):
    job = ScanJobFactory(user=PolicyFactory().user, markets=["BTC-EUR"])
    env = {
        "ORACLE_ROLE": "scan",
        "LOG_FORMAT": "json",
        "BITVAVO_API_URL": exchange.api_url,
        **exchange.server.readonly_env(),
        "BITVAVO_TRADE_KEY": "",
        "BITVAVO_TRADE_SECRET": "",
        "OPENAI_API_KEY": "",  # the offline advisor
    }
    with celery_worker(queue="scan", env=env, concurrency=1) as worker:
        assert scan_jobs_dispatch_due(owner="log-test") == 1
        wait_for(lambda: events(worker.log(), "scan.finished"), what="the scan")
        log = worker.log()

    (finished,) = events(log, "scan.finished")
    assert finished["job_id"] == job.pk
    proposal = TradeProposal.objects.filter(scan_job=job).first()
    assert finished["proposal_id"] == (proposal.pk if proposal else None)
    assert finished["status"] in ("PROPOSED", "NO_TRADE")
    assert finished["usage_id"] is not None
