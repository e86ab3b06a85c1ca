from datetime import UTC, datetime, time, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from exchange.errors import ExchangeError
from ops.report import Report, report_build, report_lookup_range, report_markets
from trading.reconcile import exchange_clock_offset_ms, exchange_orders_between

SHOWN = "%Y-%m-%d %H:%M:%S"


def plain(value) -> str:
    return f"{value.normalize():f}"


def moment(text: str) -> datetime:
    """An ISO date (midnight UTC) or date-time (UTC unless it names its zone)."""
    value = parse_datetime(text)
    if value is None:
        day = parse_date(text)
        if day is None:
            raise CommandError(
                f"DATE_INVALID: {text!r} is not an ISO date or date-time (2026-01-31T12:00)."
            )
        value = datetime.combine(day, time.min)
    return value if timezone.is_aware(value) else value.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = (
        "For a time range: orders at the exchange against executions in the database and "
        "what each final order filled against what its execution recorded, every user's "
        "holding plus unallocated funds against the exchange's balances (exits non-zero on "
        "any orphan either way or any difference), LLM budget use and scan health. Lists "
        "orders with "
        "the trade key, so it runs in the execute role (docker compose run --rm worker-execute "
        "python manage.py oracle_report)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--since", type=moment, help="start (default: 24 hours before --until)")
        parser.add_argument("--until", type=moment, help="end (default: now)")

    def handle(self, *args, since=None, until=None, **options):
        until = until or timezone.now()
        since = since or until - timedelta(hours=24)
        if since >= until:
            raise CommandError("RANGE_INVALID: --since must be before --until.")
        markets = report_markets(since=since, until=until)
        start, end = report_lookup_range(since=since, until=until)
        try:
            offset = exchange_clock_offset_ms()
            orders = exchange_orders_between(markets=markets, start=start, end=end)
        except ExchangeError as error:
            raise CommandError(f"{error.code}: {error.message}") from error
        report = report_build(
            since=since, until=until, markets=markets, orders=orders, clock_offset_ms=offset
        )
        self._print(report)
        if report.orphans:
            raise CommandError(
                f"ORPHANS_FOUND: {len(report.orphan_orders)} order(s) without an execution, "
                f"{len(report.orphan_executions)} execution(s) without an order."
            )
        if report.orders_without_call:
            raise CommandError(
                f"CALLS_MISSING: {len(report.orders_without_call)} order(s) at the exchange "
                "without their POST /order row in exchange_calls."
            )
        if report.fill_differences:
            raise CommandError(
                f"FILLS_DIFFER: {len(report.fill_differences)} execution(s) recorded other "
                "fills than the exchange reports."
            )
        if report.flows_differences:
            raise CommandError(
                f"FLOWS_DIFFER: {', '.join(report.flows_differences)}: the kept sums of the "
                "fills' moves are not what the fills add up to."
            )
        if report.checkpoint_differences:
            users = ", ".join(str(user_id) for user_id in report.checkpoint_differences)
            raise CommandError(
                f"CHECKPOINT_DIFFERS: user(s) {users}: the ledger checkpoint is not what "
                "the fills it covers replay to."
            )
        if report.holding_alerts:
            assets = ", ".join(line.asset for line in report.holding_alerts)
            raise CommandError(
                f"HOLDINGS_DIFFER: {assets}: the users' holdings plus unallocated funds are not "
                "what the exchange holds."
            )

    def _print(self, report: Report) -> None:
        out = self.stdout.write
        since, until = (report.since.astimezone(UTC), report.until.astimezone(UTC))
        out(f"Oracle report {since:{SHOWN}} .. {until:{SHOWN}} UTC")
        out(f"markets: {', '.join(report.markets) or '(none)'}")
        out("")
        out("Orders and executions")
        out(f"  orders at the exchange:        {report.orders_at_exchange}")
        executions = ", ".join(f"{s}={n}" for s, n in report.executions.items()) or "none"
        out(f"  executions in the database:    {executions}")
        out(f"  unresolved (SUBMITTING):       {report.unresolved}")
        out(f"  orders without an execution:   {len(report.orphan_orders)}")
        for order in report.orphan_orders:
            out(
                f"    order {order['order_id']} {order['market']} {order['side']} "
                f"at {order['created']:{SHOWN}} clientOrderId="
                f"{order['client_order_id'] or '-'} execution={order['execution']}"
            )
        out(f"  executions without an order:   {len(report.orphan_executions)}")
        for execution in report.orphan_executions:
            out(
                f"    execution #{execution['execution_id']} (proposal "
                f"#{execution['proposal_id']}) {execution['market']} "
                f"order id {execution['exchange_order_id'] or '-'}"
            )
        out(f"  orders not final yet:          {report.orders_not_final}")
        out(f"  finished without fills kept:   {report.fills_not_recorded}")
        out(f"  orders without a call row:     {len(report.orders_without_call)}")
        for client_order_id in report.orders_without_call:
            out(f"    clientOrderId={client_order_id}")
        out(f"  filled differently:            {len(report.fill_differences)}")
        for diff in report.fill_differences:
            (status, amount, eur), (kept_status, kept_amount, kept_eur) = (
                diff["exchange"],
                diff["recorded"],
            )
            out(
                f"    execution #{diff['execution_id']} order {diff['order_id']} "
                f"{diff['market']}: exchange {status} {amount} for {eur} EUR, recorded "
                f"{kept_status or '-'} {kept_amount} for {kept_eur} EUR"
            )
        out("")
        budget = report.budget
        out("LLM budget")
        by_status = ", ".join(f"{s}={n}" for s, n in budget["by_status"].items()) or "none"
        out(f"  calls counted:                 {budget['calls']} ({by_status})")
        out(
            f"  tokens:                        {budget['prompt']} prompt, "
            f"{budget['completion']} completion"
        )
        refusals = ", ".join(f"{c}={n}" for c, n in budget["refusals"].items()) or "none"
        out(f"  refusals:                      {refusals}")
        out("")
        scans = report.scans
        out("Scan health")
        out(
            f"  jobs:                          {scans['total']} ({scans['enabled']} enabled, "
            f"{scans['failing']} failing)"
        )
        out(f"  jobs finished in the range:    {scans['finished_in_range']}")
        out(
            f"  advisor calls / failures:      {scans['advisor_calls_in_range']} / "
            f"{scans['advisor_failures_in_range']}"
        )
        out(f"  jobs whose last lease expired: {scans['lease_expired_last_run']}")
        out(
            f"  since the counters started:    {scans['claimed_total']} claims, "
            f"{scans['leases_expired_total']} expired leases recovered, "
            f"{scans['lease_contention_total']} lease contentions"
        )
        out("")
        out("Holdings: every user's holding + unallocated funds = the exchange's balance")
        read_at = next((line.read_at for line in report.holdings if line.read_at), None)
        out(f"  balances read at:              {f'{read_at:{SHOWN}} UTC' if read_at else 'never'}")
        for line in report.holdings:
            exchange = "-" if line.exchange is None else plain(line.exchange)
            difference = "-" if line.difference is None else plain(line.difference)
            out(
                f"  {line.asset:<6} users {plain(line.users)} + unallocated "
                f"{plain(line.unallocated)} = {plain(line.expected)}; exchange {exchange}; "
                f"difference {difference}" + (f"  ALERT {line.alert}" if line.alert else "")
            )
        kept = ", ".join(f"{a} {plain(d)}" for a, d in report.flows_differences.items())
        out(f"  kept sums less a recount:      {kept or 'none differ'}")
        differing = ", ".join(f"user {u}" for u in report.checkpoint_differences)
        out(f"  ledger checkpoints recounted:  {differing or 'none differ'}")
        out("")
        out(f"orphans: {report.orphans}")
