"""What the Telegram bot shows of a proposal and what its buttons do: the same selectors
and services as the console and the API, as the linked user. Registered with the
notifications app when trading is loaded (TradingConfig.ready)."""

from __future__ import annotations

import logging
from decimal import Decimal

from django.utils import timezone

from exchange.errors import ExchangeError
from exchange.readonly import ReadonlyClient
from notifications.services import console_url
from notifications.telegram import Card, telegram_desk_register
from trading import selectors, services
from trading.decision import decision_part_read
from trading.errors import NotFound
from trading.models import TradeExecution, TradeProposal
from trading.preflight import preflight_preview

logger = logging.getLogger(__name__)


def _price_now(market: str) -> Decimal | None:
    try:
        return ReadonlyClient().ticker_price(market)
    except ExchangeError as error:
        logger.warning("no price for %s on a card: %s", market, error.code)
        return None


def decision_card_facts(*, user, proposal: TradeProposal) -> dict:
    """What a card shows, read now, with the decision screen's selectors and parts (the
    card leaves out the chart and the ledger)."""
    now = timezone.now()
    execution = TradeExecution.objects.for_user(user).filter(proposal_id=proposal.pk).first()
    price = _price_now(proposal.market)
    drift = None
    if price is not None and proposal.price_at_proposal:
        drift = (price - proposal.price_at_proposal) / proposal.price_at_proposal
    live = proposal.status in (TradeProposal.Status.PENDING, TradeProposal.Status.APPROVED)
    preflight = None
    if live and execution is None:
        preflight = preflight_preview(proposal=proposal, as_approved=True)
    record = _record_line(proposal)
    return {
        "proposal": proposal,
        "execution": execution,
        "price_now": price,
        "drift": drift,
        "advisor_record": record,
        "preflight": preflight,
        "expired": proposal.expires_at <= now,
        "url": console_url("admin:trading_tradeproposal_change", proposal.pk),
    }


def _record_line(proposal: TradeProposal) -> str | None:
    """The advisor's record at the proposal's confidence, as the decision screen reads it
    (evaluation's part, a layer above); None while nothing at it is scored."""
    advisor = decision_part_read("advisor", proposal)
    label = f"at confidence {proposal.confidence}"
    record = next((r for r in advisor.records if r.label == label), None) if advisor else None
    if record is None or not record.count:
        return None
    return (
        f"record at {proposal.confidence}% ({advisor.horizon_hours} h): {record.count} scored, "
        f"{record.hit_rate:.0%} hits, mean net {record.mean_net_return:+.2%}"
    )


def _money(value: Decimal | None) -> str:
    return "unknown" if value is None else f"{value:,.2f}"


def _card_text(facts: dict) -> str:
    proposal: TradeProposal = facts["proposal"]
    lines = [
        f"Proposal #{proposal.pk}: {proposal.side.upper()} {proposal.amount_eur} EUR "
        f"of {proposal.market}",
    ]
    price = f"Price now {_money(facts['price_now'])} EUR"
    if facts["drift"] is not None:
        price += f" ({facts['drift']:+.2%} since {_money(proposal.price_at_proposal)} at proposal)"
    lines.append(price)
    confidence = f"Confidence {proposal.confidence}%"
    if facts["advisor_record"]:
        confidence += f"; {facts['advisor_record']}"
    lines.append(confidence)
    if proposal.rationale:
        lines.append(f"Why: {proposal.rationale[:1500]}")
    preflight = facts["preflight"]
    if preflight is not None:
        verdicts = [
            f"{'ok' if check.passed else 'NO'} {check.rule.replace('_', ' ')}"
            + ("" if check.passed else f" ({check.code})")
            for check in preflight.checks
        ]
        lines.append("Preflight: " + ", ".join(verdicts))
    expires = proposal.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    lines.append(f"{'Expired' if facts['expired'] else 'Expires'} {expires}")
    status = proposal.status
    if proposal.decided_by_id is not None and proposal.decided_at is not None:
        status += f" by {proposal.decided_by.get_username()}"
    execution = facts["execution"]
    if execution is not None:
        status += f"; execution #{execution.pk} {execution.status}"
        if execution.error_code:
            status += f" ({execution.error_code})"
    lines.append(f"Status: {status}")
    lines.append(facts["url"])
    return "\n".join(lines)


def _actions(facts: dict) -> tuple[str, ...]:
    proposal = facts["proposal"]
    if facts["expired"] or facts["execution"] is not None:
        return ()
    if proposal.status == TradeProposal.Status.PENDING:
        return ("approve", "reject")
    if proposal.status == TradeProposal.Status.APPROVED:
        return ("execute", "reject")
    return ()


class TradingDesk:
    def card(self, *, user, proposal_id: int) -> Card | None:
        try:
            proposal = selectors.proposal_get(user=user, proposal_id=proposal_id)
        except NotFound:
            return None
        facts = decision_card_facts(user=user, proposal=proposal)
        return Card(text=_card_text(facts), actions=_actions(facts))

    def act(self, *, user, proposal_id: int, action: str, reason: str = "") -> str:
        proposal = selectors.proposal_get(user=user, proposal_id=proposal_id)
        if action == "approve":
            services.proposal_approve(proposal=proposal, actor=user)
            return "Approved"
        if action == "reject":
            services.proposal_reject(proposal=proposal, actor=user, reason=reason)
            return f"Rejected ({reason.strip()[:200]})"
        if action == "execute":
            outcome = services.execution_request(proposal=proposal, actor=user)
            return f"Execution #{outcome.execution.pk} {outcome.execution.status}"
        raise ValueError(f"unknown action {action}")


telegram_desk_register(TradingDesk())
