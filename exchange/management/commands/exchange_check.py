"""Checks the exchange setup without risk and prints a plain report; exits 1 on any problem.

- connectivity and clock drift (GET /time);
- the read-only key: may read balances, may NOT trade (a random-order cancel answers 310);
- the trade key (execute role only, the only process that holds it): present and may trade.
"""

import os

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from exchange.errors import ExchangeError
from exchange.keycheck import probe_can_trade
from exchange.readonly import ReadonlyClient

MAX_DRIFT_MS = 1000


class Command(BaseCommand):
    help = "Checks connectivity, clock drift and both key pairs; non-zero exit on a problem."

    def add_arguments(self, parser):
        parser.add_argument(
            "--role",
            choices=["scan", "execute", "all"],
            default="all",
            help="scan: the read-only key only; execute: the trade key only; all: both.",
        )

    def handle(self, *args, role, **options):
        problems = []

        def report(ok: bool, line: str) -> None:
            self.stdout.write(f"{'OK     ' if ok else 'PROBLEM'}  {line}")
            if not ok:
                problems.append(line)

        self.stdout.write(f"exchange: {settings.BITVAVO_API_URL}")
        readonly = ReadonlyClient()
        try:
            server = readonly.time()
            drift = server - _local_ms()
            report(True, "connectivity: GET /time answered")
            report(
                abs(drift) <= MAX_DRIFT_MS, f"clock drift: {drift:+d} ms (limit ±{MAX_DRIFT_MS})"
            )
        except ExchangeError as error:
            report(False, f"connectivity: {error.code}: {error.message}")

        if role in ("scan", "all"):
            self._check_readonly(readonly, report)
        if role in ("execute", "all"):
            self._check_trade(report)
        if problems:
            raise CommandError(f"{len(problems)} problem(s): " + "; ".join(problems))
        self.stdout.write("all checks passed")

    def _check_readonly(self, client, report):
        if not client.has_key:
            report(False, "read-only key: BITVAVO_READONLY_KEY/SECRET are not set")
            return
        try:
            client.balance()
            report(True, "read-only key: may read balances")
        except ExchangeError as error:
            report(False, f"read-only key: cannot read balances ({error.code})")
        try:
            can_trade = probe_can_trade(client._transport, operator_id=settings.BITVAVO_OPERATOR_ID)
            report(
                not can_trade,
                "read-only key: may not trade"
                if not can_trade
                else "read-only key: MAY TRADE — use a key without Trade permission",
            )
        except ExchangeError as error:
            report(False, f"read-only key: probe failed ({error.code})")

    def _check_trade(self, report):
        role = os.environ.get("ORACLE_ROLE") or settings.ORACLE_ROLE
        if role != "execute":
            report(False, f"trade key: only the execute worker holds it (ORACLE_ROLE is {role!r})")
            return
        from exchange.orders import TradeClient

        try:
            client = TradeClient()
        except ExchangeError as error:
            report(False, f"trade key: {error.code}: {error.message}")
            return
        try:
            can_trade = client.can_trade()
            report(
                can_trade,
                "trade key: may trade"
                if can_trade
                else "trade key: may NOT trade — it lacks the Trade permission",
            )
        except ExchangeError as error:
            report(False, f"trade key: probe failed ({error.code})")


def _local_ms() -> int:
    from exchange.transport import now_ms

    return now_ms()
