from decimal import Decimal, InvalidOperation

from django.core.management.base import BaseCommand, CommandError

from exchange.simulator.server import DEMO_READONLY, DEMO_TRADE, SimulatorServer
from exchange.simulator.state import DEFAULT_BALANCES


class Command(BaseCommand):
    help = "Runs the Bitvavo-compatible simulator (paper mode, the demo, the tests)."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8765)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--seed", type=int, default=7, help="seed of the price walk")
        parser.add_argument(
            "--history-days",
            type=int,
            default=3,
            help="days of price history before start (candles, replays)",
        )
        parser.add_argument(
            "--balance",
            action="append",
            default=[],
            metavar="ASSET=AMOUNT",
            help="a starting balance, repeatable (default: "
            + ", ".join(f"{a}={v}" for a, v in DEFAULT_BALANCES.items())
            + "); any given replaces the defaults",
        )

    def handle(self, *args, port, host, seed, balance, history_days, **options):
        balances = dict(_balance(item) for item in balance) or None
        if not 1 <= history_days <= 400:
            raise CommandError("--history-days must be from 1 to 400")
        server = SimulatorServer(
            port=port, host=host, seed=seed, balances=balances, history_days=history_days
        )
        self.stdout.write(f"Bitvavo simulator on {server.api_url}")
        for label, pair, demo in (
            ("read-only key (view) ", server.readonly_pair, DEMO_READONLY),
            ("trade key (trade)    ", server.trade_pair, DEMO_TRADE),
        ):
            # The built-in demo pairs are public; a pair from the environment stays secret.
            shown = f"{pair[0]}  secret: {pair[1]}" if pair == demo else pair[0]
            self.stdout.write(f"  {label}: {shown}")
        starting = server.state.starting_balances
        self.stdout.write("  balances: " + ", ".join(f"{a}={v}" for a, v in starting.items()))
        self.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.httpd.server_close()


def _balance(item: str) -> tuple[str, Decimal]:
    asset, _, amount = item.partition("=")
    try:
        value = Decimal(amount)
    except InvalidOperation:
        value = Decimal("NaN")
    if not asset or not value.is_finite() or value < 0:
        raise CommandError(f"--balance wants ASSET=AMOUNT, e.g. EUR=10000; got {item!r}")
    return asset.upper(), value
