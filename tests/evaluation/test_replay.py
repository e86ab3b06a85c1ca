"""Replay: snapshots rebuilt with no look-ahead, scored as proposals are, LLM calls through
the user's budget; against the simulator's history over HTTP."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from budget.models import GptUsageLog
from evaluation.replay import advisor_replay, snapshot_at
from evaluation.scorecard import stats
from evaluation.scoring import minute_of
from exchange.readonly import Candle, ReadonlyClient
from scheduler.advisors import LlmAdvisor, OfflineAdvisor
from tests.factories import PolicyFactory
from tests.scheduler.llm_server import LlmTestServer, Reply

LIMITS = {"min_order_eur": Decimal("10.00"), "max_order_eur": Decimal("100"), "min_confidence": 50}
HOUR_MS = 3_600_000


def candle(ts_ms: int, close: str) -> Candle:
    price = Decimal(close)
    return Candle(ts_ms, price, price, price, price, Decimal(1))


def test_a_snapshot_uses_only_candles_closed_before_its_time():
    at = datetime(2026, 11, 1, 12, 30, tzinfo=UTC)
    at_ms = int(at.timestamp() * 1000)
    hour = at_ms - at_ms % HOUR_MS  # 12:00, still forming at 12:30
    history = {
        # Newest first. The 12:00 candle closes at 13:00: after `at`, so never seen.
        "1h": [candle(hour, "999999")] + [candle(hour - i * HOUR_MS, "100") for i in range(1, 30)],
        "4h": [candle(hour - 4 * HOUR_MS * i, "100") for i in range(1, 10)],
        "1d": [candle(hour - 24 * HOUR_MS * i, "100") for i in range(1, 10)],
    }

    snapshot = snapshot_at(market="BTC-EUR", history=history, last=Decimal("101"), at=at)["BTC-EUR"]

    assert snapshot["timeframes"]["1h"]["close"] == Decimal("100")
    assert snapshot["high_24h"] == Decimal("100") and snapshot["change_24h"] == 0
    assert snapshot["last"] == Decimal("101")
    # 11:00 closed at 12:00, before 12:30: it is the newest candle seen.
    later = snapshot_at(
        market="BTC-EUR", history=history, last=Decimal("101"), at=at + timedelta(minutes=30)
    )["BTC-EUR"]
    assert later["timeframes"]["1h"]["close"] == Decimal("999999")


@pytest.fixture
def history(market):
    """Twelve days of simulator history instead of three."""
    market.control.set_history_days(12)
    return market


@pytest.mark.django_db
def test_an_offline_replay_is_scored_from_the_candles_as_proposals_are(history):
    result = advisor_replay(
        market="ETH-EUR", days=5, every_minutes=60, advisor=OfflineAdvisor(), limits=LIMITS
    )

    assert sum(result.decisions.values()) == 5 * 24 + 1
    assert result.decisions["propose"] == len(result.proposals) > 0
    # The 1 h outcomes again, each from its own candle read: close at t + 1 h vs the last
    # close before t, after 2 × 0.0025.
    client = ReadonlyClient()
    expected, now_minute = [], minute_of(datetime.now(UTC))
    for proposal in result.proposals:
        exit_minute = minute_of(proposal["at"] + timedelta(hours=1))
        if exit_minute >= now_minute:
            continue  # that candle has not closed yet: the replay leaves it unscored too
        (exit_candle,) = client.candles(
            "ETH-EUR", interval="1m", limit=1, end_ms=exit_minute * 60_000
        )
        sign = 1 if proposal["side"] == "buy" else -1
        value = sign * (exit_candle.close - proposal["price"]) / proposal["price"] - Decimal(
            "0.005"
        )
        expected.append((value, proposal["confidence"]))
    assert result.scorecards[1]["overall"] == stats(expected)
    assert len(expected) + result.unscored[1] == len(result.proposals)
    # The last hours' proposals cannot be scored at 72 h yet; at 1 h at most the last two.
    assert result.unscored[72] > 0 and result.unscored[1] <= 2


@pytest.fixture
def llm_server(settings, monkeypatch):
    server = LlmTestServer().start()
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    settings.OPENAI_BASE_URL = server.base_url
    yield server
    server.stop()


@pytest.mark.django_db
def test_an_llm_replay_goes_through_the_users_budget_and_stops_when_it_is_spent(
    history, llm_server
):
    llm_server.default = Reply(
        content=json.dumps(
            {
                "decision": "propose",
                "market": "BTC-EUR",
                "side": "buy",
                "amount_eur": "10.00",
                "confidence": 50,
                "rationale": "up",
                "exit_plan": None,
                "invalidation": None,
            }
        )
    )
    policy = PolicyFactory(gpt_hourly_limit=3, gpt_daily_limit=10)
    advisor = LlmAdvisor(
        api_key="test-key", base_url=llm_server.base_url, model="test-model", timeout=5
    )

    result = advisor_replay(
        market="BTC-EUR", days=1, every_minutes=60, advisor=advisor, limits=LIMITS, policy=policy
    )

    assert llm_server.calls == 3
    assert result.decisions == {"propose": 3, "no_trade": 0, "rejected": 0}
    assert result.stopped.startswith("HOURLY_BUDGET_EXHAUSTED")
    rows = GptUsageLog.objects.filter(user=policy.user, reason="replay")
    assert sorted(rows.values_list("status", flat=True)) == ["REFUSED"] + ["SUCCEEDED"] * 3
    # The replay's own earlier proposals are shown back once their outcome is known: the
    # first prompt has none, and no later one has an hour that had not ended.
    prompts = [json.loads(r["messages"][1]["content"]) for r in llm_server.requests]
    assert prompts[0]["track_record"] == []
    for prompt in prompts:
        assert all("24" not in e["net_return"] for e in prompt["track_record"])


@pytest.mark.django_db
def test_the_command_prints_a_scorecard_per_horizon_with_the_baselines(history):
    out = StringIO()
    call_command(
        "advisor_replay", "--market", "BTC-EUR", "--days", "2", "--every", "120", stdout=out
    )

    text = out.getvalue()
    assert "replay of offline (offline-momentum-v1) on BTC-EUR" in text
    for hours in (1, 4, 24, 72):
        assert f"horizon {hours} h" in text
    assert text.count("baseline no_trade") == 4 and text.count("baseline offline_shadow") == 4
