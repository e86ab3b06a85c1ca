"""Replay: what an advisor would have proposed over past candles, scored as proposals are.

Snapshots are rebuilt from history with no look-ahead: the snapshot at time t uses only
candles that closed before t, and its last price is the close of the minute before t.
Each would-be proposal is scored like a stored one (scoring.py): the close of the 1-minute
candle containing t + horizon, against that last price, after the taker fee in and out.
An LLM replay admits every call through the user's budget, like a scan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from budget.errors import BudgetExhausted
from budget.models import GptUsageLog
from budget.services import budget_admit, budget_close
from evaluation.models import HORIZONS_HOURS
from evaluation.scorecard import Scored, net_return, scorecard_of
from evaluation.scoring import (
    BENCHMARK_MARKET,
    MINUTE,
    closes_read,
    minute_of,
    minute_start,
    shadow_proposal,
)
from evaluation.selectors import TRACK_RECORD_PROPOSALS, track_record_capped
from exchange.readonly import Candle, ReadonlyClient
from scheduler.advisors import advice_parse, advisor_input
from scheduler.errors import AdvisorCallFailed, AdvisorOutputInvalid
from scheduler.market import CANDLE_COUNT, CANDLE_INTERVAL, TIMEFRAMES, market_features

INTERVAL_MS = {"1h": 3_600_000, "4h": 14_400_000, "1d": 86_400_000}
MAX_CANDLES_PER_READ = 1440


def candles_between(
    *, client: ReadonlyClient, market: str, interval: str, start_ms: int, end_ms: int
) -> list[Candle]:
    """Every candle of `interval` starting in [start_ms, end_ms], newest first, paging back
    from `end_ms` (Bitvavo's anchor) in reads of at most 1440 candles."""
    found: dict[int, Candle] = {}
    anchor = end_ms
    while anchor >= start_ms:
        rows = client.candles(
            market, interval=interval, limit=MAX_CANDLES_PER_READ, start_ms=start_ms, end_ms=anchor
        )
        rows = [c for c in rows if start_ms <= c.timestamp_ms <= end_ms]
        if not rows:
            break
        found.update((c.timestamp_ms, c) for c in rows)
        oldest = min(c.timestamp_ms for c in rows)
        if oldest <= start_ms or len(rows) < MAX_CANDLES_PER_READ:
            break
        anchor = oldest - 1
    return [found[ts] for ts in sorted(found, reverse=True)]


def snapshot_at(
    *, market: str, history: dict[str, list[Candle]], last: Decimal, at: datetime
) -> dict[str, dict]:
    """The market's snapshot as a scan at `at` would have seen it, from candles closed
    before `at` only (newest first)."""
    at_ms = int(at.timestamp() * 1000)
    closed = {
        interval: [c for c in rows if c.timestamp_ms + INTERVAL_MS[interval] <= at_ms][
            : TIMEFRAMES[interval]
        ]
        for interval, rows in history.items()
    }
    day = closed[CANDLE_INTERVAL][:CANDLE_COUNT]
    day_figures = {
        "last": last,
        "open": day[-1].open if day else None,
        "high": max((c.high for c in day), default=None),
        "low": min((c.low for c in day), default=None),
        "volume": sum((c.volume for c in day), Decimal(0)) if day else None,
    }
    return {market: market_features(day=day_figures, candles=closed)}


@dataclass
class ReplayResult:
    market: str
    advisor: str
    model: str
    start: datetime
    end: datetime
    decisions: dict[str, int] = field(
        default_factory=lambda: {"propose": 0, "no_trade": 0, "rejected": 0}
    )
    proposals: list[dict] = field(default_factory=list)
    scorecards: dict[int, dict] = field(default_factory=dict)
    unscored: dict[int, int] = field(default_factory=dict)  # horizon not passed yet
    stopped: str = ""  # why the replay ended early (a budget refusal)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reads: int = 0


def advisor_replay(
    *,
    market: str,
    days: int,
    every_minutes: int,
    advisor,
    limits: dict,
    policy=None,
    client: ReadonlyClient | None = None,
    now: datetime | None = None,
) -> ReplayResult:
    """Asks `advisor` at every `every_minutes` over the last `days` and scores its answers.
    With a `policy`, every call is admitted through its user's LLM budget first."""
    client = client or ReadonlyClient()
    now = (now or timezone.now()).replace(second=0, microsecond=0)
    end = now
    start = end - timedelta(days=days)
    moments = []
    moment = start
    while moment <= end:
        moments.append(moment)
        moment += timedelta(minutes=every_minutes)
    result = ReplayResult(market, advisor.name, advisor.model, start, end)

    history = {}
    for interval, count in TIMEFRAMES.items():
        warmup = INTERVAL_MS[interval] * (count + 1)
        history[interval] = candles_between(
            client=client,
            market=market,
            interval=interval,
            start_ms=int(start.timestamp() * 1000) - warmup,
            end_ms=int(end.timestamp() * 1000),
        )
    now_minute = minute_of(timezone.now())
    entry_minutes = {minute_of(m) - 1 for m in moments}
    exit_minutes = {minute_of(m + timedelta(hours=h)) for m in moments for h in HORIZONS_HOURS}
    closed_exits = {m for m in exit_minutes if m < now_minute}
    closes: dict[str, dict[int, Decimal]] = {}
    for name in dict.fromkeys([market, BENCHMARK_MARKET]):
        closes[name], reads = closes_read(
            client=client, market=name, minutes=entry_minutes | closed_exits
        )
        result.reads += reads

    fee = settings.BITVAVO_TAKER_FEE
    rows: dict[int, list[Scored]] = {h: [] for h in HORIZONS_HOURS}
    result.unscored = dict.fromkeys(HORIZONS_HOURS, 0)
    asked: list[dict] = []  # earlier would-be proposals, for the advisor's record
    for moment in moments:
        last = closes[market].get(minute_of(moment) - 1)
        if last is None:
            continue
        snapshot = snapshot_at(market=market, history=history, last=last, at=moment)
        record = track_record_capped(_record_known_at(asked, moment, closes[market], fee))
        usage = None
        if policy is not None:
            try:
                usage = budget_admit(
                    user_id=policy.user_id,
                    daily_limit=policy.gpt_daily_limit,
                    hourly_limit=policy.gpt_hourly_limit,
                    model=advisor.model,
                    reason="replay",
                    tokens_estimate=advisor.tokens_estimate(
                        snapshot=snapshot, limits=limits, track_record=record
                    ),
                )
            except BudgetExhausted as refusal:
                result.stopped = f"{refusal.code} at {moment:%Y-%m-%d %H:%M}"
                break
        reply = None
        try:
            reply = advisor.advise(snapshot=snapshot, limits=limits, track_record=record)
            advice = advice_parse(text=reply.text, markets=[market])
        except (AdvisorOutputInvalid, AdvisorCallFailed) as error:
            # Counted like a scan's rejected output or failed call; the replay goes on.
            advice, decision = None, "rejected"
            _usage_close(usage, reply, failed=f"{error.code}: {error.message}")
        else:
            decision = "no_trade" if advice is None else "propose"
            _usage_close(usage, reply)
        if reply is not None:
            result.prompt_tokens += reply.prompt_tokens or 0
            result.completion_tokens += reply.completion_tokens or 0
        result.decisions[decision] += 1
        if advice is None:
            continue
        proposal = {
            "at": moment,
            "side": advice.side,
            "confidence": advice.confidence,
            "price": last,
        }
        asked.append(proposal)
        result.proposals.append(proposal)
        shadow = shadow_proposal(
            markets=advisor_input(snapshot=snapshot, limits=limits, track_record=[])["markets"],
            limits={"min_order_eur": str(limits["min_order_eur"])},
        )
        for hours in HORIZONS_HOURS:
            exit_minute = minute_of(moment + timedelta(hours=hours))
            price = closes[market].get(exit_minute)
            if price is None:
                result.unscored[hours] += 1
                continue
            btc = closes[BENCHMARK_MARKET]
            btc_entry, btc_exit = btc.get(minute_of(moment) - 1), btc.get(exit_minute)
            shadow_value = None
            if shadow:
                shadow_value = net_return(side=shadow[1], entry=shadow[3], exit=price, fee=fee)
            rows[hours].append(
                Scored(
                    net_return=net_return(side=advice.side, entry=last, exit=price, fee=fee),
                    confidence=advice.confidence,
                    market=market,
                    advisor=advisor.name,
                    model=advisor.model,
                    human="undecided",
                    btc_net_return=net_return(side="buy", entry=btc_entry, exit=btc_exit, fee=fee)
                    if btc_entry and btc_exit
                    else None,
                    shadow_net_return=shadow_value,
                    shadow_confidence=shadow[2] if shadow else None,
                )
            )
    result.scorecards = {h: scorecard_of(rows[h], horizon_hours=h) for h in HORIZONS_HOURS}
    return result


def _record_known_at(asked: list[dict], moment: datetime, closes, fee) -> list[dict]:
    """Earlier would-be proposals with the outcomes known at `moment`, newest first: a
    horizon counts only once its candle closed before `moment`."""
    entries = []
    for proposal in reversed(asked[-TRACK_RECORD_PROPOSALS:]):
        outcomes = {}
        for hours in HORIZONS_HOURS:
            exit_minute = minute_of(proposal["at"] + timedelta(hours=hours))
            if minute_start(exit_minute) + timedelta(seconds=MINUTE) > moment:
                continue
            price = closes.get(exit_minute)
            if price is not None:
                value = net_return(
                    side=proposal["side"], entry=proposal["price"], exit=price, fee=fee
                )
                outcomes[str(hours)] = str(round(value, 4))
        if outcomes:
            entries.append(
                {
                    "at": proposal["at"].strftime("%Y-%m-%dT%H:%MZ"),
                    "side": proposal["side"],
                    "confidence": proposal["confidence"],
                    "price": str(proposal["price"]),
                    "human": "undecided",
                    "net_return": outcomes,
                }
            )
    return entries


def _usage_close(usage, reply, failed: str = "") -> None:
    if usage is None:
        return
    budget_close(
        usage_id=usage.pk,
        status=GptUsageLog.Status.FAILED if failed else GptUsageLog.Status.SUCCEEDED,
        prompt_tokens=reply.prompt_tokens if reply else None,
        completion_tokens=reply.completion_tokens if reply else None,
        error=failed,
    )
