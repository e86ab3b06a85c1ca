"""Preflight facts: what the validators need, read from the database and the exchange.

Uses only the read-only side of the exchange layer (public market rules, the balance
snapshot), so the web process can show a preview without ever loading the trade client.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, connection
from django.db.models import Sum
from django.utils import timezone

from core.logs import log_event
from core.scoping import in_user_scope, scope_system
from exchange.errors import ExchangeError
from exchange.readonly import ReadonlyClient
from exchange.rules import MarketRules
from exchange.selectors import balance_latest
from trading.models import EmergencyStop, Policy, ProposalEvent, TradeExecution, TradeProposal
from trading.validators import (
    BalanceFacts,
    MarketFacts,
    PolicyFacts,
    PreflightContext,
    PreflightResult,
    ProposalFacts,
    RecentTrade,
    preflight_run,
)

logger = logging.getLogger(__name__)

# Fixed forever: the client order id of a proposal must be the same in every process.
CLIENT_ORDER_NAMESPACE = uuid.UUID("4f0a3b8e-2c1d-4e5f-9a6b-7c8d9e0f1a2b")


def client_order_id_for(proposal_id: int) -> uuid.UUID:
    return uuid.uuid5(CLIENT_ORDER_NAMESPACE, f"trade-proposal:{proposal_id}")


Status = TradeExecution.Status

# Executions that may have produced an order: they count for caps, cooldown and balance.
LIVE_EXECUTION_STATUSES = (
    TradeExecution.Status.CLAIMED,
    TradeExecution.Status.SUBMITTING,
    TradeExecution.Status.SUBMITTED,
)


# The rules this process has read, with when they were read from the exchange.
_rules_seen: dict[str, tuple[MarketRules, float]] = {}


def market_rules(market: str) -> MarketRules | None:
    """The market's rules (status, decimals, minimums) from the exchange, cached briefly.

    Rules are at most MARKET_RULES_CACHE_SECONDS old, counted from the exchange read: the
    shared cache keeps them that long, and this process keeps its copy no longer, which
    saves a cache round trip per order without making them any older. The claim checks
    them in preflight and the send step applies the same object to the order.
    """
    known = market_rules_known(market)
    if known is not None:
        return known
    key = f"trading:market-rules:v2:{market}"
    seen = cache.get(key)
    if seen is None:
        try:
            rules = ReadonlyClient().market(market)
        except ExchangeError:
            logger.warning("market rules unavailable for %s", market, exc_info=True)
            return None
        if rules is None:
            return None
        seen = (rules, time.time())
        cache.set(key, seen, settings.MARKET_RULES_CACHE_SECONDS)
    _rules_seen[market] = seen
    return seen[0]


def market_rules_known(market: str) -> MarketRules | None:
    """This process's copy of the market's rules, if fresh enough. Never any I/O."""
    seen = _rules_seen.get(market)
    if seen is None or time.time() - seen[1] >= settings.MARKET_RULES_CACHE_SECONDS:
        return None
    return seen[0]


def market_rules_forget() -> None:
    """Drops this process's copies (the shared cache is cleared on its own)."""
    _rules_seen.clear()


def _market_facts(rules: MarketRules | None) -> MarketFacts | None:
    if rules is None:
        return None
    return MarketFacts(
        status=rules.status,
        min_order_in_quote=rules.min_order_in_quote_asset,
        quote_decimals=rules.notional_decimals,
    )


def _price(market: str) -> Decimal | None:
    try:
        return ReadonlyClient().ticker_price(market)
    except ExchangeError:
        logger.warning("price unavailable for %s", market, exc_info=True)
        return None


def emergency_stop_active() -> bool | None:
    try:
        return EmergencyStop.objects.get(pk=EmergencyStop.SINGLETON_ID).active
    except Exception:
        # Fails closed: None makes the kill-switch rule refuse.
        logger.exception("emergency stop unreadable")
        return None


def _policy_facts(policy: Policy) -> PolicyFacts:
    return PolicyFacts(
        trading_enabled=policy.trading_enabled,
        allowlist=tuple(policy.allowlist),
        min_order_eur=policy.min_order_eur,
        max_order_eur=policy.max_order_eur,
        min_confidence=policy.min_confidence,
        cooldown_minutes=policy.cooldown_minutes,
        anti_flip_minutes=policy.anti_flip_minutes,
        max_daily_trades=policy.max_daily_trades,
        max_trades_per_hour=policy.max_trades_per_hour,
    )


# The proposal's owner's policy: the user's lock when claiming. Its columns are exactly what
# preflight and the policy snapshot use.
_POLICY_COLUMNS = ("id", "user_id", *Policy.SNAPSHOT_FIELDS)
_POLICY_COLUMN_LIST = ", ".join(_POLICY_COLUMNS)  # the model's own names, not input
_POLICY_SQL = f"SELECT {_POLICY_COLUMN_LIST} FROM trading_policies WHERE user_id = (SELECT user_id FROM trade_proposals WHERE id = %(proposal_id)s)"  # noqa: E501, S608

# Everything else preflight reads from the database, in one statement (one snapshot): the
# proposal as it is now, its execution if any, the emergency stop, the user's live
# executions in the window of caps, cooldown and anti-flip, and the balance recheck. The
# balance is the last read-only snapshot of what the order spends (the quote currency for
# a buy, the asset for a sell), less what every user claimed since: the account is shared,
# so all claims after the snapshot count.
_FACTS_SQL = """
SELECT p.user_id, p.status, p.market, p.side, p.amount_eur, p.confidence, p.expires_at,
       p.override_cooldown, p.override_anti_flip,
       (SELECT e.id FROM trade_executions e WHERE e.proposal_id = p.id) AS execution_id,
       (SELECT s.active FROM trading_emergency_stop s WHERE s.id = %(stop_id)s) AS stop_active,
       recent.markets, recent.sides, recent.claimed,
       balance.available, balance.fetched_at,
       (SELECT COALESCE(SUM(e.amount_eur), 0) FROM trade_executions e
         WHERE e.side = p.side AND e.status = ANY(%(live)s)
           AND e.market LIKE CASE p.side WHEN 'buy' THEN '%%-' || pair.quote ELSE p.market END
           AND e.claimed_at > balance.fetched_at) AS spent
FROM trade_proposals p
CROSS JOIN LATERAL (
    SELECT split_part(p.market, '-', 1) AS base, split_part(p.market, '-', 2) AS quote
) pair
CROSS JOIN LATERAL (
    SELECT array_agg(e.market) AS markets, array_agg(e.side) AS sides,
           array_agg(e.claimed_at) AS claimed
    FROM trade_executions e
    WHERE e.user_id = p.user_id AND e.status = ANY(%(live)s)
      AND e.claimed_at >= %(read_at)s - (
          SELECT GREATEST(interval '1 day', make_interval(mins => pol.cooldown_minutes),
                          make_interval(mins => pol.anti_flip_minutes))
          FROM trading_policies pol WHERE pol.user_id = p.user_id)
) recent
LEFT JOIN exchange_balances balance
       ON balance.asset = CASE p.side WHEN 'buy' THEN pair.quote ELSE pair.base END
WHERE p.id = %(proposal_id)s
"""


@dataclass(frozen=True)
class _Facts:
    """What the database says, before the exchange's part (rules, price) is added."""

    user_id: int
    policy: Policy | None
    execution_id: int | None
    proposal: ProposalFacts
    stop_active: bool | None
    recent: tuple[RecentTrade, ...]
    balance: tuple[Decimal | None, datetime | None, Decimal]  # available, as of, spent since

    def context(
        self, *, rules: MarketRules | None, price: Decimal | None, now: datetime
    ) -> PreflightContext:
        available, fetched_at, spent = self.balance
        return PreflightContext(
            proposal=self.proposal,
            policy=_policy_facts(self.policy) if self.policy else None,
            # A missing stop row reads as None: the kill-switch rule fails closed.
            emergency_stop_active=self.stop_active,
            recent_trades=self.recent if self.policy else (),
            market=_market_facts(rules),
            balance=_balance_facts(
                available=available,
                fetched_at=fetched_at,
                spent=spent,
                buying=self.proposal.side == "buy",
                price=price,
                now=now,
            ),
            now=now,
        )


def _facts_read(*, proposal_id: int, claim: _ClaimTransaction | None = None) -> _Facts:
    """The policy and every other fact in the database, in one round trip.

    Two statements sent together. For a `claim`, its transaction opens in the same round
    trip, the first statement takes the user's lock (the policy row, FOR UPDATE) and the
    second runs only once it is granted, with a snapshot of its own (READ COMMITTED): it
    sees every claim committed before, so caps are exact. Take `now` for the rules after
    this returns: a claim committed while this waited for the lock is not in the future.
    """
    if connection.vendor != "postgresql":
        return _facts_read_portable(proposal_id=proposal_id, claim=claim)
    params = {
        "proposal_id": proposal_id,
        "stop_id": EmergencyStop.SINGLETON_ID,
        # The window starts from before the read: it may hold a little more, never less.
        "read_at": timezone.now(),
        "live": list(LIVE_EXECUTION_STATUSES),
    }
    with connection.cursor() as cursor:
        if claim is None:
            cursor.execute(f"{_POLICY_SQL};\n{_FACTS_SQL}", params)
        else:
            begin = claim.begin_statement()
            cursor.execute(f"{begin};\n{_POLICY_SQL} FOR UPDATE;\n{_FACTS_SQL}", params)
            cursor.nextset()  # past the transaction's opening
        policy_row = cursor.fetchone()
        cursor.nextset()
        row = cursor.fetchone()
    if row is None:
        raise TradeProposal.DoesNotExist(f"No proposal #{proposal_id}.")
    (user_id, status, market, side, amount_eur, confidence, expires_at, override_cooldown,
     override_anti_flip, execution_id, stop_active, markets, sides, claimed,
     available, fetched_at, spent) = row  # fmt: skip
    return _Facts(
        user_id=user_id,
        policy=_policy_from_row(policy_row) if policy_row else None,
        execution_id=execution_id,
        proposal=ProposalFacts(
            status=status,
            market=market,
            side=side,
            amount_eur=amount_eur,
            confidence=confidence,
            expires_at=expires_at,
            override_cooldown=override_cooldown,
            override_anti_flip=override_anti_flip,
        ),
        stop_active=stop_active,
        recent=tuple(
            RecentTrade(market=m, side=s, at=at)
            for m, s, at in zip(markets or (), sides or (), claimed or (), strict=True)
        ),
        balance=(available, fetched_at, spent),
    )


def _facts_read_portable(*, proposal_id: int, claim: _ClaimTransaction | None) -> _Facts:
    """The same facts through the ORM, a query at a time, for SQLite (the zero-setup demo).

    There a claim's transaction opens with BEGIN IMMEDIATE, which takes the database's one
    write lock, so claims are serialised as the policy-row lock serialises them on PostgreSQL.
    """
    if claim is not None:
        with connection.cursor() as cursor:
            cursor.execute(claim.begin_statement())
    proposal = TradeProposal.objects.filter(pk=proposal_id).first()
    if proposal is None:
        raise TradeProposal.DoesNotExist(f"No proposal #{proposal_id}.")
    policy = Policy.objects.filter(user_id=proposal.user_id).first()
    window = timedelta(days=1)
    if policy is not None:
        minutes = max(policy.cooldown_minutes, policy.anti_flip_minutes)
        window = max(window, timedelta(minutes=minutes))
    live = TradeExecution.objects.filter(status__in=LIVE_EXECUTION_STATUSES)
    recent = live.filter(
        user_id=proposal.user_id, claimed_at__gte=timezone.now() - window
    ).values_list("market", "side", "claimed_at")
    base, quote = proposal.market.split("-", 1)
    available, fetched_at, spent = None, None, Decimal("0")
    latest = balance_latest(quote if proposal.side == "buy" else base)
    if latest is not None:
        available, fetched_at = latest
        # The account is shared: every user's claims since the snapshot count.
        claims = live.filter(side=proposal.side, claimed_at__gt=fetched_at)
        if proposal.side == "buy":
            claims = claims.filter(market__endswith=f"-{quote}")
        else:
            claims = claims.filter(market=proposal.market)
        spent = claims.aggregate(total=Sum("amount_eur"))["total"] or Decimal("0")
    return _Facts(
        user_id=proposal.user_id,
        policy=policy,
        execution_id=TradeExecution.objects.filter(proposal_id=proposal_id)
        .values_list("pk", flat=True)
        .first(),
        # The model's fields carry the same names as the facts.
        proposal=ProposalFacts(
            **{name.name: getattr(proposal, name.name) for name in fields(ProposalFacts)}
        ),
        stop_active=EmergencyStop.objects.filter(pk=EmergencyStop.SINGLETON_ID)
        .values_list("active", flat=True)
        .first(),
        recent=tuple(RecentTrade(market=m, side=sd, at=at) for m, sd, at in recent),
        balance=(available, fetched_at, spent),
    )


def _policy_from_row(row: tuple) -> Policy:
    values = dict(zip(_POLICY_COLUMNS, row, strict=True))
    if isinstance(values["allowlist"], str):  # jsonb comes back as text
        values["allowlist"] = json.loads(values["allowlist"])
    return Policy(**values)


def _balance_facts(
    *,
    available: Decimal | None,
    fetched_at: datetime | None,
    spent: Decimal,
    buying: bool,
    price: Decimal | None,
    now: datetime,
) -> BalanceFacts | None:
    """What the account can spend in EUR, or None if no recent enough snapshot says it."""
    if available is None or fetched_at is None:
        return None
    if now - fetched_at > timedelta(seconds=settings.BALANCE_MAX_AGE_SECONDS):
        return None
    if not buying:
        if price is None:
            return None
        available = available * price
    return BalanceFacts(available_eur=available - spent, as_of=fetched_at)


def preflight_preview(*, proposal: TradeProposal, as_approved: bool = False) -> PreflightResult:
    """What every rule would say now; writes nothing and sends nothing.

    `as_approved` previews a PENDING proposal as if approved: what approving it would lead to.
    The caller has already read `proposal` in its own scope.
    """
    with scope_system():  # the balance recheck sums every user's claims
        facts = _facts_read(proposal_id=proposal.pk)
    if as_approved and facts.proposal.status == TradeProposal.Status.PENDING:
        approved = replace(facts.proposal, status=TradeProposal.Status.APPROVED)
        facts = replace(facts, proposal=approved)
    now = timezone.now()
    context = facts.context(
        rules=market_rules(proposal.market),
        price=_price(proposal.market) if proposal.side == "sell" else None,
        now=now,
    )
    return preflight_run(context)


# --- Claim ---------------------------------------------------------------------------------


@dataclass
class ExecutionOutcome:
    """What one execute call did. `execution` is None when preflight refused."""

    execution: TradeExecution | None
    created: bool = False
    refused_codes: list[str] = field(default_factory=list)
    preflight: dict[str, Any] = field(default_factory=dict)
    retry_after_seconds: float | None = None
    # The rules preflight checked; the send step applies them to the order.
    market_rules: MarketRules | None = None

    @property
    def refused(self) -> bool:
        return self.execution is None


class _ClaimTransaction:
    """The claim's transaction, opened in the round trip that takes the lock and closed in the
    one that inserts the claim: two round trips where atomic() needs four (BEGIN and COMMIT
    travel alone there). On its own it is BEGIN ... COMMIT, a durable commit before any order
    is sent; inside a caller's transaction, a savepoint. Any error rolls it back."""

    def __init__(self) -> None:
        if connection.get_autocommit():
            begin = "BEGIN" if connection.vendor == "postgresql" else "BEGIN IMMEDIATE"
            self.statements = (begin, "COMMIT", "ROLLBACK")
        else:
            name = "execution_claim"
            self.statements = (
                f"SAVEPOINT {name}",
                f"RELEASE SAVEPOINT {name}",
                f"ROLLBACK TO SAVEPOINT {name}",
            )
        self.is_open = False

    def begin_statement(self) -> str:
        """The statement that opens it, to send first; from now on it is open."""
        self.is_open = True
        return self.statements[0]

    def commit_statement(self) -> str:
        """The statement that commits it, to send last with the claim."""
        return self.statements[1]

    def __enter__(self) -> _ClaimTransaction:
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        # Still open: refused, a repeat, or an error (even before the commit sent with the
        # claim ran). Commit what was written (the refusal's audit), or roll back.
        if self.is_open:
            self.is_open = False
            with connection.cursor() as cursor:
                cursor.execute(self.statements[1] if error is None else self.statements[2])

    def committed(self) -> None:
        self.is_open = False


_CLAIM_SQL = """
INSERT INTO trade_executions
       (user_id, proposal_id, client_order_id, status, market, side, amount_eur,
        exchange_order_id, preflight_result, policy_hash, policy_snapshot, error_code,
        error_message, claimed_at, submitting_at, reconcile_attempts, created_at, updated_at)
VALUES (%(user_id)s, %(proposal_id)s, %(client_order_id)s, %(status)s, %(market)s, %(side)s,
        %(amount_eur)s, '', %(preflight_result)s::jsonb, %(policy_hash)s,
        %(policy_snapshot)s::jsonb, '', '', %(claimed_at)s, %(submitting_at)s, 0,
        %(claimed_at)s, %(claimed_at)s)
RETURNING id
"""


def _claim_insert(claim: _ClaimTransaction, **fields: Any) -> TradeExecution:
    """Inserts the execution row and commits the claim, in one round trip."""
    if connection.vendor != "postgresql":  # SQLite: one statement at a time
        execution = TradeExecution.objects.create(**fields)
        with connection.cursor() as cursor:
            cursor.execute(claim.commit_statement())
        claim.committed()
        return execution
    params = {
        **fields,
        "preflight_result": json.dumps(fields["preflight_result"]),
        "policy_snapshot": json.dumps(fields["policy_snapshot"]),
    }
    with connection.cursor() as cursor:
        cursor.execute(f"{_CLAIM_SQL};\n{claim.commit_statement()}", params)
        execution_id = cursor.fetchone()[0]
    claim.committed()
    now = fields["claimed_at"]
    execution = TradeExecution(id=execution_id, created_at=now, updated_at=now, **fields)
    execution._state.adding, execution._state.db = False, connection.alias
    return execution


def execution_claim(
    *, proposal_id: int, actor_id: int | None, submitting: bool = False
) -> ExecutionOutcome:
    """Preflight and claim under the user's lock, in one transaction.

    The claim sends nothing. Web and admin claim as CLAIMED and the execute worker moves it
    on; the worker, which sends right after, claims straight into SUBMITTING: the rules were
    just checked under the lock, and one durable commit before the order is all it needs.
    A repeat returns the existing execution; a refusal claims nothing and is audited.

    The lock is never held across an exchange read: the market's rules come from this
    process's fresh copy. Without one, or for a sell (which needs a price), the claim lets
    the lock go, reads the exchange, and runs once more with what it read.
    """
    # The balance recheck sums every user's claims (all users trade through one exchange
    # account), so in a user's request the claim reads in the system scope, entered before
    # its transaction opens and left after it ends. The request's own scope first decides
    # whether the proposal is the user's at all. Workers are outside any request: no cost.
    if in_user_scope() and not TradeProposal.objects.visible().filter(pk=proposal_id).exists():
        raise TradeProposal.DoesNotExist(f"No proposal #{proposal_id}.")
    with scope_system():
        return _execution_claim(proposal_id=proposal_id, actor_id=actor_id, submitting=submitting)


def _execution_claim(*, proposal_id: int, actor_id: int | None, submitting: bool):
    exchange: tuple[MarketRules | None, Decimal | None] | None = None
    try:
        while True:  # at most twice: the second run has the exchange's part
            with _ClaimTransaction() as claim:
                facts = _facts_read(proposal_id=proposal_id, claim=claim)
                now = timezone.now()  # after the lock was granted
                if facts.execution_id is not None:
                    existing = TradeExecution.objects.get(pk=facts.execution_id)
                    return ExecutionOutcome(execution=existing)
                market, side = facts.proposal.market, facts.proposal.side
                if exchange is None and side == "buy":
                    known = market_rules_known(market)
                    exchange = (known, None) if known is not None else None
                if exchange is not None:
                    rules, price = exchange
                    return _claim_decide(
                        claim,
                        proposal_id=proposal_id,
                        facts=facts,
                        context=facts.context(rules=rules, price=price, now=now),
                        rules=rules,
                        actor_id=actor_id,
                        submitting=submitting,
                    )
            # Outside the lock (the empty transaction just ended).
            exchange = (market_rules(market), _price(market) if side == "sell" else None)
    except IntegrityError:
        # The unique constraint is the last guard: another claim for this proposal won.
        return ExecutionOutcome(execution=TradeExecution.objects.get(proposal_id=proposal_id))


def _claim_decide(
    claim: _ClaimTransaction,
    *,
    proposal_id: int,
    facts: _Facts,
    context: PreflightContext,
    rules: MarketRules | None,
    actor_id: int | None,
    submitting: bool,
) -> ExecutionOutcome:
    """Runs every rule; inserts the claim if all pass, else records the refusal."""
    result = preflight_run(context)
    preflight = {**result.as_dict(), "at": context.now.isoformat(), "actor_id": actor_id}
    if not result.passed:
        ProposalEvent.objects.create(
            proposal_id=proposal_id,
            user_id=facts.user_id,
            actor_id=actor_id,
            kind=ProposalEvent.Kind.PREFLIGHT_FAILED,
            data=preflight,
        )
        log_event(
            logger,
            "preflight.refused",
            level=logging.WARNING,
            proposal_id=proposal_id,
            user_id=facts.user_id,
            codes=result.failed_codes,
        )
        return ExecutionOutcome(
            execution=None, refused_codes=result.failed_codes, preflight=preflight
        )

    snapshot, policy_hash = facts.policy.snapshot_and_hash()
    checked = context.proposal
    execution = _claim_insert(
        claim,
        user_id=facts.user_id,
        proposal_id=proposal_id,
        client_order_id=client_order_id_for(proposal_id),
        status=Status.SUBMITTING if submitting else Status.CLAIMED,
        market=checked.market,
        side=checked.side,
        amount_eur=checked.amount_eur,
        preflight_result=preflight,
        policy_hash=policy_hash,
        policy_snapshot=snapshot,
        claimed_at=context.now,
        submitting_at=context.now if submitting else None,
    )
    return ExecutionOutcome(
        execution=execution, created=True, preflight=preflight, market_rules=rules
    )
