"""The demo runs on SQLite: a scan records its decision, a proposal gets its price, and
scoring writes its outcomes there too, in real processes against the simulator."""

from datetime import timedelta

from django.utils import timezone

from evaluation.scoring import minute_of
from tests.workers import sqlite_demo

SETUP = """
import sys
from datetime import timedelta
import django; django.setup()
from django.contrib.auth import get_user_model
from django.utils import timezone
from trading.models import TradeProposal
from trading.services import proposal_create
user = get_user_model().objects.get(username="demo")
proposal = proposal_create(
    user=user, market="ETH-EUR", side="buy", amount_eur="25", confidence=75, source="api"
)
TradeProposal.objects.filter(pk=proposal.pk).update(created_at=sys.argv[1])
print(proposal.pk, TradeProposal.objects.get(pk=proposal.pk).price_at_proposal)
"""

REPORT = """
import django; django.setup()
from evaluation.models import AdvisorDecision, ProposalOutcome
(outcome,) = ProposalOutcome.objects.all()
print(outcome.horizon_hours, outcome.net_return, AdvisorDecision.objects.count())
"""


def test_the_demo_database_records_decisions_and_scores_proposals(simulator, tmp_path):
    simulator.control.reset()
    run = sqlite_demo(
        tmp_path,
        {
            "ORACLE_ROLE": "scan",
            "BITVAVO_API_URL": simulator.api_url,
            "OPENAI_API_KEY": "",
            **simulator.readonly_env(),
        },
    )
    created = (timezone.now() - timedelta(hours=2)).replace(microsecond=0)
    simulator.control.pin_closes(
        "ETH-EUR", {minute_of(created + timedelta(hours=1)) * 60_000: "3300"}
    )
    proposal_id, price = run("-c", SETUP, created.isoformat()).split()
    assert float(price) > 0
    run("manage.py", "run_scan", "1")

    assert "written: 1" in run("manage.py", "score_proposals")
    assert "written: 0" in run("manage.py", "score_proposals")
    horizon, net_return, decisions = run("-c", REPORT).split()
    assert horizon == "1" and decisions == "1"
    expected = (3300 - float(price)) / float(price) - 0.005
    assert abs(float(net_return) - expected) < 1e-9
