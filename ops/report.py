"""The operator's report for a time range: orders at the exchange against executions in the
database (orphans either way must be 0), what each final order filled at the exchange against
what its execution recorded (differences must be 0), LLM budget use and scan health.

Reads only. The orders come from the caller (the execute role lists them with the trade
key), so this module never touches the exchange.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from django.conf import settings
from django.db.models import Count, Q, Sum

from budget.models import GptUsageLog
from core.counters import counter_values
from exchange.fills import order_is_final, order_reported_filled, order_status
from exchange.models import BalanceSnapshot, ExchangeCall
from portfolio.valuation import market_quote
from scheduler.models import ScanJob
from scheduler.services import LEASE_EXPIRED
from trading.fills import EUR_PLACES
from trading.flows import fills_flows
from trading.ledger import position_state, positions_from_fills
from trading.models import AccountFunds, LedgerCheckpoint, Policy, TradeExecution, TradeHistory
from trading.selectors import account_flows_get, history_fills

ZERO = Decimal("0")

Status = TradeExecution.Status


@dataclass
class Report:
    since: datetime
    until: datetime
    markets: list[str]
    orders_at_exchange: int = 0
    executions: dict[str, int] = field(default_factory=dict)
    # Orders with no execution, or whose execution says no order was made.
    orphan_orders: list[dict] = field(default_factory=list)
    # SUBMITTED executions whose order the exchange does not have.
    orphan_executions: list[dict] = field(default_factory=list)
    unresolved: int = 0  # SUBMITTING: only the reconciler decides these
    # Final orders whose filled amount, EUR or status differ from what the execution recorded.
    fill_differences: list[dict] = field(default_factory=list)
    # Orders at the exchange with no POST /order row in exchange_calls (client order ids).
    orders_without_call: list[str] = field(default_factory=list)
    orders_not_final: int = 0  # still open at the exchange: nothing to compare yet
    fills_not_recorded: int = 0  # finished executions from before fills were recorded
    budget: dict = field(default_factory=dict)
    scans: dict = field(default_factory=dict)
    # Per asset, every user's holding plus unallocated funds against the exchange's balance.
    holdings: list[AssetBalance] = field(default_factory=list)
    # Per asset, the kept sums of the fills' moves less a recount from every fill (must be
    # empty: the holdings above read the kept sums).
    flows_differences: dict[str, Decimal] = field(default_factory=dict)
    # Users whose ledger checkpoint is not what their fills up to it replay to (must be
    # empty: the claims' holding rule goes on from it).
    checkpoint_differences: list[int] = field(default_factory=list)

    @property
    def orphans(self) -> int:
        return len(self.orphan_orders) + len(self.orphan_executions)

    @property
    def holding_alerts(self) -> list[AssetBalance]:
        return [line for line in self.holdings if line.alert]

    @property
    def problems(self) -> int:
        return (
            self.orphans
            + len(self.fill_differences)
            + len(self.orders_without_call)
            + len(self.holding_alerts)
            + len(self.flows_differences)
            + len(self.checkpoint_differences)
        )


def report_markets(*, since: datetime, until: datetime) -> list[str]:
    """Every market an order of ours could be in: allowlisted now, or executed in the range."""
    markets = set(
        TradeExecution.objects.filter(claimed_at__range=(since, until)).values_list(
            "market", flat=True
        )
    )
    for allowlist in Policy.objects.values_list("allowlist", flat=True):
        markets.update(allowlist or [])
    return sorted(markets)


def report_lookup_range(*, since: datetime, until: datetime) -> tuple[datetime, datetime]:
    """The range to list orders in: an order is created up to one access window (plus the
    read timeout) after its execution started sending, so an execution near the edge still
    finds its order."""
    slack = timedelta(milliseconds=settings.BITVAVO_ACCESS_WINDOW_MS) + timedelta(
        seconds=settings.BITVAVO_READ_TIMEOUT
    )
    return since - slack, until + slack


def report_build(
    *,
    since: datetime,
    until: datetime,
    markets: list[str],
    orders: list[dict],
    clock_offset_ms: int = 0,
    price_of: Callable[[str], Decimal | None] | None = None,
) -> Report:
    """Compares `orders` (listed over report_lookup_range) with the executions and the order
    calls' log, and adds the budget and scan figures, for [since, until]. Orders are stamped
    on the exchange's clock, `clock_offset_ms` ahead of ours."""
    report = Report(since=since, until=until, markets=markets)
    since_ms = since.timestamp() * 1000 + clock_offset_ms
    until_ms = until.timestamp() * 1000 + clock_offset_ms
    in_range = [o for o in orders if since_ms <= int(o["created"]) <= until_ms]
    report.orders_at_exchange = len(in_range)

    by_client_id = {
        str(e.client_order_id): e
        for e in TradeExecution.objects.filter(
            client_order_id__in=[o["clientOrderId"] for o in orders if o.get("clientOrderId")]
        )
    }
    may_have_order = (Status.SUBMITTING, Status.SUBMITTED)
    for order in in_range:
        execution = by_client_id.get(str(order.get("clientOrderId")))
        # A FAILED execution that recorded its final order (ORDER_NOT_FILLED) did have one.
        if execution is None or (
            execution.status not in may_have_order and not execution.exchange_status
        ):
            report.orphan_orders.append(
                {
                    "order_id": order["orderId"],
                    "market": order["market"],
                    "side": order.get("side"),
                    "client_order_id": order.get("clientOrderId"),
                    "created": datetime.fromtimestamp(int(order["created"]) / 1000, UTC),
                    "execution": f"#{execution.pk} {execution.status}" if execution else "none",
                }
            )

    executions = TradeExecution.objects.filter(claimed_at__range=(since, until))
    report.executions = dict(
        executions.values_list("status").annotate(n=Count("id")).order_by("status")
    )
    report.unresolved = report.executions.get(Status.SUBMITTING, 0)
    order_ids = {str(o["orderId"]) for o in orders}
    for execution in executions.filter(status=Status.SUBMITTED).order_by("pk"):
        if execution.exchange_order_id not in order_ids:
            report.orphan_executions.append(
                {
                    "execution_id": execution.pk,
                    "proposal_id": execution.proposal_id,
                    "market": execution.market,
                    "exchange_order_id": execution.exchange_order_id,
                }
            )

    _compare_fills(report, orders=in_range, executions=by_client_id)
    report.orders_without_call = _orders_without_call(in_range)
    report.budget = _budget(since=since, until=until)
    report.scans = _scans(since=since, until=until)
    report.holdings = holdings_balances(price_of=price_of or market_price)
    report.flows_differences = flows_recount_differences()
    report.checkpoint_differences = checkpoints_recount_differences()
    return report


def flows_recount_differences() -> dict[str, Decimal]:
    """The kept sums (trading/flows.py) against a recount from every fill, per asset: what
    differs. The report reads the whole history once; pages and /metrics never do."""
    kept = account_flows_get()
    counted = fills_flows(history_fills(TradeHistory.objects.all()))
    assets = sorted({*kept, *counted})
    return {
        asset: kept.get(asset, ZERO) - counted.get(asset, ZERO)
        for asset in assets
        if kept.get(asset, ZERO) != counted.get(asset, ZERO)
    }


def checkpoints_recount_differences() -> list[int]:
    """The users whose ledger checkpoint differs from a replay of the fills it covers: up to
    its last fill in ledger order, recorded by the time it was taken (one recorded since is
    the claims' to find, and they do). One query per checkpoint, for the report only."""
    differing = []
    for checkpoint in LedgerCheckpoint.objects.order_by("user_id"):
        covered = TradeHistory.objects.filter(
            user_id=checkpoint.user_id, id__lte=checkpoint.last_history_id
        ).exclude(checkpoint.after())
        fills = history_fills(covered)
        replayed = {asset: position_state(p) for asset, p in positions_from_fills(fills).items()}
        if replayed != checkpoint.positions or len(fills) != checkpoint.fills:
            differing.append(checkpoint.user_id)
    return differing


def _compare_fills(report: Report, *, orders: list[dict], executions: dict) -> None:
    """Each final order's filled amount (base), EUR and status at the exchange against what
    its execution recorded; EUR compared at the recorded scale (8 decimals)."""
    for order in orders:
        execution = executions.get(str(order.get("clientOrderId")))
        if execution is None or execution.status not in (Status.SUBMITTED, Status.FAILED):
            continue
        if not order_is_final(order):
            report.orders_not_final += 1
            continue
        if not execution.exchange_status:
            report.fills_not_recorded += 1
            continue
        amount, amount_eur = order_reported_filled(order)
        exchange = (order_status(order), amount, amount_eur.quantize(EUR_PLACES, ROUND_HALF_EVEN))
        recorded = (execution.exchange_status, execution.filled_amount, execution.filled_eur)
        if exchange != recorded:
            report.fill_differences.append(
                {
                    "execution_id": execution.pk,
                    "order_id": order["orderId"],
                    "market": order["market"],
                    "exchange": exchange,
                    "recorded": recorded,
                }
            )


def _orders_without_call(orders: list[dict]) -> list[str]:
    """Every order we placed has its POST /order row (written before the request)."""
    wanted = {str(o["clientOrderId"]) for o in orders if o.get("clientOrderId")}
    logged = ExchangeCall.objects.filter(
        method="POST", path__endswith="/order", client_order_id__in=wanted
    ).values_list("client_order_id", flat=True)
    return sorted(wanted - {str(value) for value in logged})


def _budget(*, since: datetime, until: datetime) -> dict:
    usage = GptUsageLog.objects.filter(created_at__range=(since, until))
    by_status = dict(usage.values_list("status").annotate(n=Count("id")).order_by("status"))
    tokens = usage.aggregate(
        prompt=Sum("prompt_tokens", default=0), completion=Sum("completion_tokens", default=0)
    )
    refusals = dict(
        usage.filter(status=GptUsageLog.Status.REFUSED)
        .values_list("error")
        .annotate(n=Count("id"))
        .order_by("error")
    )
    counted = sum(n for status, n in by_status.items() if status in GptUsageLog.COUNTED)
    return {"calls": counted, "by_status": by_status, "refusals": refusals, **tokens}


def _scans(*, since: datetime, until: datetime) -> dict:
    jobs = ScanJob.objects.aggregate(
        total=Count("id"),
        enabled=Count("id", filter=Q(enabled=True)),
        failing=Count("id", filter=Q(consecutive_failures__gt=0)),
        lease_expired_last_run=Count("id", filter=Q(last_error=LEASE_EXPIRED)),
        finished_in_range=Count("id", filter=Q(last_finished_at__range=(since, until))),
    )
    scan_usage = GptUsageLog.objects.filter(
        created_at__range=(since, until), scan_job__isnull=False
    )
    jobs["advisor_calls_in_range"] = scan_usage.filter(status__in=GptUsageLog.COUNTED).count()
    jobs["advisor_failures_in_range"] = scan_usage.filter(status=GptUsageLog.Status.FAILED).count()
    counters = counter_values()
    jobs["leases_expired_total"] = counters["scan_leases_expired"]
    jobs["lease_contention_total"] = counters["scan_lease_contention"]
    jobs["claimed_total"] = counters["scan_jobs_claimed"]
    return jobs


# --- the parts add up: every user's holding plus unallocated funds against the exchange -------


@dataclass(frozen=True)
class AssetBalance:
    """One asset of the shared account. `users` is every user's holding (of EUR: their
    allocations plus what their fills received less what they paid), `unallocated` the
    account's funds no user was given; together they are what the exchange should hold."""

    asset: str
    users: Decimal
    unallocated: Decimal
    exchange: Decimal | None  # available + in order, as the read-only key last read it
    read_at: datetime | None
    price: Decimal | None  # EUR per unit, to weigh a difference (read only when there is one)

    @property
    def expected(self) -> Decimal:
        return self.users + self.unallocated

    @property
    def difference(self) -> Decimal | None:
        """What the exchange holds beyond what the product accounts for (deposits,
        withdrawals, fees or trades outside the product); negative: less than it should."""
        return None if self.exchange is None else self.exchange - self.expected

    @property
    def difference_eur(self) -> Decimal | None:
        if self.difference is None or self.price is None:
            return None
        return self.difference * self.price

    @property
    def alert(self) -> str:
        """Why this asset does not add up ("" when it does, within the tolerance)."""
        if self.exchange is None:
            return "NO_BALANCE: the exchange's balance was never read."
        if self.difference == 0:
            return ""
        off = f"{self.difference.normalize():+f} {self.asset}"
        if self.difference_eur is None:
            return f"NOT_VALUED: {off}, and no price to weigh it."
        if abs(self.difference_eur) > settings.HOLDINGS_TOLERANCE_EUR:
            return (
                f"HOLDINGS_DIFFER: the exchange holds {off} "
                f"({self.difference_eur:+.2f} EUR) beyond the users' holdings and unallocated "
                f"funds (tolerance {settings.HOLDINGS_TOLERANCE_EUR} EUR)."
            )
        return ""


def holdings_balances(*, price_of: Callable[[str], Decimal | None]) -> list[AssetBalance]:
    """Per asset: the sum of every user's holding (from every fill up to the moment the
    balances were read) plus unallocated funds, against the exchange's balances.

    EUR belongs to users by their allocation: funds paid in, less what was allocated, is
    unallocated. Each fill moves the account as the exchange moves it: a buy pays its EUR
    and receives the asset, a sell the reverse, the fee leaves in its own currency.
    """
    snapshots = {row.asset: row for row in BalanceSnapshot.objects.all()}
    read_at = max((row.fetched_at for row in snapshots.values()), default=None)
    funds = dict(AccountFunds.objects.values_list("asset", "amount"))
    allocated = Policy.objects.aggregate(total=Sum("allocation_eur", default=ZERO))["total"]
    # Every fill's moves as kept when it was recorded, less those of the fills newer than the
    # balances (they cannot show them yet): a handful of rows whatever the history holds.
    flows: dict[str, Decimal] = defaultdict(lambda: ZERO, account_flows_get())
    if read_at is not None:
        newer = TradeHistory.objects.filter(executed_at__gt=read_at)
        for asset, amount in fills_flows(history_fills(newer)).items():
            flows[asset] -= amount
    lines = []
    for asset in sorted({*snapshots, *funds, *flows, "EUR"}):
        snapshot = snapshots.get(asset)
        users, unallocated = flows[asset], funds.get(asset, ZERO)
        if asset == "EUR":
            users, unallocated = users + allocated, unallocated - allocated
        if snapshot is None and not users and not unallocated:
            continue
        exchange = None if snapshot is None else snapshot.available + snapshot.in_order
        # Only a difference needs a price (a read of the exchange's public ticker).
        needs_price = asset != "EUR" and exchange is not None and exchange != users + unallocated
        lines.append(
            AssetBalance(
                asset=asset,
                users=users,
                unallocated=unallocated,
                exchange=exchange,
                read_at=None if snapshot is None else snapshot.fetched_at,
                price=price_of(f"{asset}-EUR") if needs_price else Decimal("1"),
            )
        )
    return lines


def market_price(market: str) -> Decimal | None:
    """The market's last price from the shared cache or the public ticker; None if unread."""
    return market_quote(market).price
