"""`score_proposals` run twice at once, as two real processes on the test database and the
simulator: every (proposal, horizon) row is written once, by one of them."""

import subprocess
import sys
from decimal import Decimal

import pytest

from evaluation.models import ProposalOutcome
from tests.evaluation.conftest import proposal_at
from tests.factories import UserFactory
from tests.workers import ROOT, child_env

PROPOSALS = 150


def run_counts(output: str) -> tuple[int, int]:
    """(written, already there) from the command's summary line."""
    words = output.split()
    return int(words[words.index("written:") + 1]), int(words[words.index("there:") + 1])


@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_write_each_row_once(market):
    user = UserFactory()
    for _ in range(PROPOSALS):
        # Five hours old: the 1 h and 4 h horizons are due, 2 rows each.
        proposal_at(5, user=user, price_at_proposal=Decimal("60000"))
    # Both runs' first candle read is held 8 s, so each has listed every due row before
    # either writes one: they then race on the same rows.
    market.control.inject("latency", times=2, seconds=8, method="GET", path="/BTC-EUR/candles")
    env = child_env({"BITVAVO_API_URL": market.api_url, "ORACLE_ROLE": "scan"})
    command = [sys.executable, "manage.py", "score_proposals"]
    runs = [
        subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=300)[0] for run in runs]

    assert [run.returncode for run in runs] == [0, 0], outputs
    counts = [run_counts(output) for output in outputs]
    rows = PROPOSALS * 2
    assert sum(written for written, _ in counts) == rows, outputs
    # Each run met every row the other wrote: they really ran at the same time.
    assert sum(there for _, there in counts) == rows, outputs
    assert ProposalOutcome.objects.count() == rows
    assert market.control.state()["faults"] == [] or all(
        f["times"] == 0 for f in market.control.state()["faults"]
    )
