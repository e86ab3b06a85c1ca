"""Scores proposals against the market: one outcome per (proposal, horizon) once the horizon
has passed, whatever became of the proposal.

The exit price is the close of the 1-minute candle of the proposal's market that contains
created_at + horizon; that candle must have closed. Candles are read per market in windows
of at most 1440 minutes, so one read serves every proposal of that market in the window.
Running twice at once is safe: the UNIQUE (proposal, horizon) constraint keeps one row, and
the loser of a race counts the row as already there instead of failing.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from evaluation.models import HORIZONS_HOURS, ProposalOutcome
from evaluation.scorecard import net_return
from exchange.errors import ExchangeError
from exchange.readonly import ReadonlyClient
from scheduler.advisors import PROPOSE, OfflineAdvisor
from trading.models import TradeProposal

logger = logging.getLogger(__name__)

BENCHMARK_MARKET = "BTC-EUR"
MINUTE = 60
MAX_CANDLES_PER_READ = 1440
SCORE_BATCH = 5000


def minute_of(moment: datetime) -> int:
    """The 1-minute candle containing `moment`, as minutes since the epoch."""
    return int(moment.timestamp()) // MINUTE


def minute_start(minute: int) -> datetime:
    return datetime.fromtimestamp(minute * MINUTE, tz=UTC)


def closes_read(
    *, client: ReadonlyClient, market: str, minutes: set[int]
) -> tuple[dict[int, Decimal], int]:
    """The close of each given minute's 1-minute candle that the exchange has, in as few
    reads as the 1440-candle limit allows, and the number of reads. A minute the exchange
    leaves out is absent."""
    closes: dict[int, Decimal] = {}
    reads = 0
    pending = sorted(minutes)
    while pending:
        first = pending[0]
        window = [m for m in pending if m < first + MAX_CANDLES_PER_READ]
        last = window[-1]
        candles = client.candles(
            market,
            interval="1m",
            limit=last - first + 1,
            start_ms=first * MINUTE * 1000,
            # The end of the last minute: Bitvavo anchors the window at `end`.
            end_ms=(last + 1) * MINUTE * 1000 - 1,
        )
        reads += 1
        wanted = set(window)
        for candle in candles:
            minute = candle.timestamp_ms // (MINUTE * 1000)
            if minute in wanted:
                closes[minute] = candle.close
        pending = pending[len(window) :]
    return closes, reads


def _shadow(proposal: TradeProposal) -> tuple[str, str, int, Decimal] | None:
    """What the offline advisor proposes on the snapshot stored with the proposal's
    decision: (market, side, confidence, the snapshot's last price), or None."""
    decision = getattr(proposal, "advisor_decision", None)
    markets = (decision.input or {}).get("markets") if decision else None
    if not markets:
        return None
    return shadow_proposal(markets=markets, limits=decision.input.get("limits") or {})


def shadow_proposal(*, markets: dict, limits: dict) -> tuple[str, str, int, Decimal] | None:
    snapshot = {
        market: {
            "change_24h": Decimal(str(data["change_24h"])),
            "volatility_1h": Decimal(str(data["volatility_1h"])),
        }
        for market, data in markets.items()
        if data.get("last") is not None
    }
    answer = OfflineAdvisor().decide(
        snapshot=snapshot, limits={"min_order_eur": limits.get("min_order_eur", "0")}
    )
    if answer["decision"] != PROPOSE:
        return None
    market = answer["market"]
    return market, answer["side"], answer["confidence"], Decimal(str(markets[market]["last"]))


@dataclass
class ScoreRun:
    written: int = 0
    already_there: int = 0
    waiting: int = 0  # horizon passed but the candle is not there (yet)
    reads: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Due:
    proposal: TradeProposal
    horizon_hours: int
    exit_minute: int


def _due(*, now: datetime, now_minute: int) -> list[_Due]:
    due = []
    for hours in HORIZONS_HOURS:
        scored = ProposalOutcome.objects.filter(proposal=OuterRef("pk"), horizon_hours=hours)
        proposals = (
            TradeProposal.objects.filter(created_at__lte=now - timedelta(hours=hours))
            .filter(~Exists(scored))
            .select_related("advisor_decision")
            .order_by("created_at")[:SCORE_BATCH]
        )
        for proposal in proposals:
            exit_minute = minute_of(proposal.created_at + timedelta(hours=hours))
            if exit_minute < now_minute:  # its candle has closed
                due.append(_Due(proposal, hours, exit_minute))
    return due


def proposals_score(*, client: ReadonlyClient | None = None, now: datetime | None = None):
    """Scores every proposal whose horizon has passed and that has no outcome for it yet."""
    client = client or ReadonlyClient()
    now = now or timezone.now()
    run = ScoreRun()
    due = _due(now=now, now_minute=minute_of(now))
    shadows = {d.proposal.pk: _shadow(d.proposal) for d in due}

    needed: dict[str, set[int]] = defaultdict(set)
    for d in due:
        start = minute_of(d.proposal.created_at)
        needed[d.proposal.market].add(d.exit_minute)
        if d.proposal.price_at_proposal is None:
            needed[d.proposal.market].add(start)
        needed[BENCHMARK_MARKET].update((start, d.exit_minute))
        if shadows[d.proposal.pk]:
            needed[shadows[d.proposal.pk][0]].add(d.exit_minute)
    closes: dict[str, dict[int, Decimal]] = {}
    for market, minutes in sorted(needed.items()):
        try:
            closes[market], reads = closes_read(client=client, market=market, minutes=minutes)
            run.reads += reads
        except ExchangeError as error:
            # That market's proposals wait for the next run; the others go on.
            run.errors.append(f"{market}: {error.code}")
            closes[market] = {}

    fee = settings.BITVAVO_TAKER_FEE
    for d in due:
        proposal, market_closes = d.proposal, closes[d.proposal.market]
        start = minute_of(proposal.created_at)
        entry = proposal.price_at_proposal or market_closes.get(start)
        price = market_closes.get(d.exit_minute)
        if entry is None or price is None:
            run.waiting += 1
            continue
        value = net_return(side=proposal.side, entry=entry, exit=price, fee=fee)
        btc = closes[BENCHMARK_MARKET]
        btc_value = None
        if btc.get(start) and btc.get(d.exit_minute):
            btc_value = net_return(side="buy", entry=btc[start], exit=btc[d.exit_minute], fee=fee)
        shadow = shadows[proposal.pk]
        shadow_fields = {}
        if shadow and closes[shadow[0]].get(d.exit_minute):
            market, side, confidence, shadow_entry = shadow
            shadow_fields = {
                "shadow_market": market,
                "shadow_side": side,
                "shadow_confidence": confidence,
                "shadow_net_return": net_return(
                    side=side, entry=shadow_entry, exit=closes[market][d.exit_minute], fee=fee
                ),
            }
        try:
            with transaction.atomic():
                ProposalOutcome.objects.create(
                    proposal=proposal,
                    user_id=proposal.user_id,
                    horizon_hours=d.horizon_hours,
                    candle_at=minute_start(d.exit_minute),
                    entry_price=entry,
                    price=price,
                    net_return=value,
                    hit=value > 0,
                    btc_net_return=btc_value,
                    **shadow_fields,
                )
            run.written += 1
        except IntegrityError:
            scored = ProposalOutcome.objects.filter(
                proposal=proposal, horizon_hours=d.horizon_hours
            )
            if not scored.exists():
                raise
            run.already_there += 1  # another run wrote it first
    return run
