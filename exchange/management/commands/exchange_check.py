"""Checks the exchange setup without risk and prints a plain report; exits 1 on any problem.

- connectivity and clock drift (GET /time): a drift is compensated in every signed request,
  so above a second it is a warning, not a problem;
- the read-only key: may read balances, may NOT trade (a random-order cancel answers 310);
  in the scan role, the process must not hold the trade key at all;
- the trade key (execute role only, the only process that holds it): present and may trade.
"""

import logging

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from exchange.errors import ExchangeError
from exchange.keycheck import (
    assert_no_trade_key_in_environment,
    assert_scan_key_cannot_trade,
    assert_trade_key_present,
)
from exchange.readonly import ReadonlyClient
from exchange.transport import clock_offset_seen, now_ms

logger = logging.getLogger(__name__)

# Above this the drift is reported (a warning, and the oracle_exchange_clock_offset_ms
# metric): every signed request compensates it, so it stops nothing.
MAX_DRIFT_MS = 1000


class Command(BaseCommand):
    help = "Checks connectivity, clock drift and both key pairs; non-zero exit on a problem."

    def add_arguments(self, parser):
        parser.add_argument(
            "--role",
            choices=["scan", "execute", "all"],
            default="all",
            help="scan: the read-only key only; execute: the trade key only; all: both "
            "(the trade key is checked only with ORACLE_ROLE=execute).",
        )

    def handle(self, *args, role, **options):
        problems = []

        def report(ok: bool, line: str) -> None:
            self.stdout.write(f"{'OK     ' if ok else 'PROBLEM'}  {line}")
            if not ok:
                problems.append(line)

        self.stdout.write(f"exchange: {settings.BITVAVO_API_URL}")
        self._check_clock(report)
        if role in ("scan", "all"):
            self._check_readonly(report)
        if role == "scan":
            self._check(report, assert_no_trade_key_in_environment, "scan process: no trade key")
        if role in ("execute", "all"):
            self._check(report, assert_trade_key_present, "trade key: set, may trade")
        if problems:
            raise CommandError(f"{len(problems)} problem(s): " + "; ".join(problems))
        self.stdout.write("all checks passed")

    def _check_clock(self, report):
        client = ReadonlyClient()
        try:
            started = now_ms()
            client.time()  # also opens the connections, so the drift below is not skewed
            report(True, f"connectivity: GET /time answered in {now_ms() - started} ms")
            before = now_ms()
            server = client.time()
            after = now_ms()
        except ExchangeError as error:
            report(False, f"connectivity: {error.code}: {error.message}")
            return
        drift = server - (before + after) // 2
        clock_offset_seen(drift, base_url=settings.BITVAVO_API_URL)
        window = settings.BITVAVO_ACCESS_WINDOW_MS
        # What cannot work: a clock read whose uncertainty (half the round trip) is not
        # well inside the access window, so no timestamp can be trusted to land in it.
        if (after - before) // 2 >= window // 2:
            report(False, f"clock: read in {after - before} ms, too slow for a {window} ms window")
        elif abs(drift) > MAX_DRIFT_MS:
            line = f"clock drift: {drift:+d} ms, compensated in every signed request"
            self.stdout.write(f"WARNING  {line}")
            logger.warning("exchange %s", line)
        else:
            report(True, f"clock drift: {drift:+d} ms (within ±{MAX_DRIFT_MS})")

    def _check_readonly(self, report):
        client = ReadonlyClient()
        if client.has_key:
            try:
                client.balance()
                report(True, "read-only key: may read balances")
            except ExchangeError as error:
                report(False, f"read-only key: cannot read balances ({error.code})")
        self._check(report, assert_scan_key_cannot_trade, "read-only key: may not trade")

    def _check(self, report, check, ok_line: str) -> None:
        try:
            check()
        except ExchangeError as error:
            label = ok_line.split(":")[0]
            report(False, f"{label}: {error.code}: {error.message}")
            return
        report(True, ok_line)
