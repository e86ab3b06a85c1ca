from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from evaluation.scoring import minute_of
from exchange.readonly import ReadonlyClient
from tests.factories import TradeProposalFactory
from trading.models import TradeProposal


@pytest.fixture
def market(simulator, settings, monkeypatch):
    """The simulator's public market data, fresh (no pinned closes), with no key at all:
    scoring reads public data only."""
    simulator.control.reset()
    cache.clear()
    settings.BITVAVO_API_URL = simulator.api_url
    for name in ("BITVAVO_READONLY_KEY", "BITVAVO_READONLY_SECRET"):
        monkeypatch.delenv(name, raising=False)
    yield simulator
    simulator.control.reset()


class CountingClient(ReadonlyClient):
    """The real read-only client over HTTP, counting its candle reads per market."""

    def __init__(self):
        super().__init__()
        self.candle_reads: dict[str, int] = {}

    def candles(self, market, **kwargs):
        self.candle_reads[market] = self.candle_reads.get(market, 0) + 1
        return super().candles(market, **kwargs)


def proposal_at(hours_ago: float, **fields) -> TradeProposal:
    """A proposal stored `hours_ago` hours ago (created_at is set after the insert)."""
    proposal = TradeProposalFactory(**fields)
    created = timezone.now() - timedelta(hours=hours_ago)
    TradeProposal.objects.filter(pk=proposal.pk).update(created_at=created)
    proposal.refresh_from_db()
    return proposal


def pin(market_sim, market: str, proposal: TradeProposal, closes_by_hours: dict) -> None:
    """Pins the close of the 1-minute candle containing created_at + h for each h (0: the
    proposal's own minute)."""
    market_sim.control.pin_closes(
        market,
        {
            minute_of(proposal.created_at + timedelta(hours=h)) * 60_000: price
            for h, price in closes_by_hours.items()
        },
    )
