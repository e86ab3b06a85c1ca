from django.core.management.base import BaseCommand

from exchange.simulator.server import SimulatorServer


class Command(BaseCommand):
    help = "Runs the Bitvavo-compatible simulator (paper mode, the demo, the tests)."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8765)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--seed", type=int, default=7)

    def handle(self, *args, port, host, seed, **options):
        server = SimulatorServer(port=port, host=host, seed=seed)
        self.stdout.write(f"Bitvavo simulator on {server.api_url}")
        self.stdout.write(f"  read-only key (view):  {server.readonly_pair[0]}")
        self.stdout.write(f"  trade key (trade):     {server.trade_pair[0]}")
        self.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.httpd.server_close()
