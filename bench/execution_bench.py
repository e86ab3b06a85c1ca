"""Execution overhead: a full execute next to the bare minimum path, in the same run.

    python bench/execution_bench.py [--runs 200] [--big-rows 1000000] [--steps]

The bare path is one INSERT, one order POST (same client, same simulator) and one UPDATE;
a second bare path reads the market's price first, as the full path must for its drift
guard (an exchange request, not persistence). The full path is execution_run(): the price,
preflight facts, the per-user lock, the claim, the compare-and-set transitions, the order,
history, the account flows and audit. Both run against the Bitvavo
simulator with zero latency on a PostgreSQL database of their own (oracle_bench). Then the
history and LLM usage tables get 1,000,000 rows across 1,000 users and the full path is
measured again, and last for users with `--history` fills of their own (one an hour).
Prints medians, p99, ratios and the SQL statement count per execution. `--steps` times
each step of the full path in a round of its own.
"""

import argparse
import atexit
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import recreate_database  # noqa: E402 - needs the path above

BENCH_DB = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/oracle_bench")
os.environ["DATABASE_URL"] = BENCH_DB
os.environ.setdefault("CACHE_URL", "redis://127.0.0.1:6379/9")
# The broker production uses: an ended execution publishes its notification after commit.
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/9")
# Per-execution INFO events would drown the figures; writing them costs microseconds.
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ["ORACLE_ROLE"] = "execute"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(control) -> None:
    for _ in range(600):  # a loaded machine may take a while to start it
        try:
            control.orders()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the simulator did not start")


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--big-rows", type=int, default=1_000_000)
    parser.add_argument("--steps", action="store_true", help="time each step of the full path")
    parser.add_argument("--history", type=int, default=5000, help="fills of the last phase's user")
    args = parser.parse_args()

    recreate_database(BENCH_DB)
    import django

    django.setup()
    from django.conf import settings
    from django.core.cache import cache
    from django.core.management import call_command
    from django.db import connection, connections

    call_command("migrate", verbosity=0)
    cache.clear()
    # As in production: no query log kept for every statement.
    settings.DEBUG = False

    # The simulator runs in its own process, as the exchange would: no shared GIL.
    from exchange.simulator.control import SimulatorControl
    from exchange.simulator.server import DEMO_READONLY, DEMO_TRADE

    port = free_port()
    simulator = subprocess.Popen(
        [sys.executable, "manage.py", "run_bitvavo_simulator", "--port", str(port)],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.DEVNULL,
    )
    atexit.register(simulator.terminate)  # whatever ends the run
    api_url = f"http://127.0.0.1:{port}/v2"
    control = SimulatorControl(api_url)
    wait_until_up(control)
    os.environ.update(
        BITVAVO_READONLY_KEY=DEMO_READONLY[0],
        BITVAVO_READONLY_SECRET=DEMO_READONLY[1],
        BITVAVO_TRADE_KEY=DEMO_TRADE[0],
        BITVAVO_TRADE_SECRET=DEMO_TRADE[1],
    )
    settings.BITVAVO_API_URL = api_url
    control.set_balance("EUR", "100000000")
    # Both paths and their repeats make more requests a minute than a real key may: the
    # simulated exchange grants them (the transport follows its headers).
    control.set_rate_limit(1_000_000)

    from exchange.orders import TradeClient
    from exchange.readonly import ReadonlyClient
    from exchange.services import balances_refresh
    from tests.factories import PolicyFactory, TradeProposalFactory
    from trading.send import execution_run

    balances_refresh()
    client = TradeClient()

    def new_policy():
        return PolicyFactory(
            max_daily_trades=100_000,
            max_trades_per_hour=100_000,
            cooldown_minutes=0,
            anti_flip_minutes=0,
            max_order_eur=Decimal("100"),
            allocation_eur=Decimal("1000000"),  # every buy of a round fits the allocation
        )

    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS bench_bare (id bigserial PRIMARY KEY,"
            " client_order_id uuid UNIQUE, status text, order_id text)"
        )

    @contextlib.contextmanager
    def timed_steps(spent):
        """Each step of the full path timed where it is called (nested steps overlap)."""
        import notifications.services
        import trading.claim
        import trading.finish
        import trading.send

        steps = (
            ("price read (also priced bare)", ReadonlyClient, "ticker_price"),
            ("claim, whole", trading.send, "execution_claim"),
            ("  facts read (3 queries)", trading.claim, "preflight_facts"),
            ("  the rules (pure)", trading.claim, "preflight_run"),
            ("  audit entry", trading.claim, "audit_record"),
            ("compare-and-set", trading.send, "_mark_submitting"),
            ("order POST (also bare)", TradeClient, "place_market_order"),
            ("finish, whole", trading.send, "execution_finish_order"),
            ("  notification publish", notifications.services, "_publish"),
            ("  ended counter", trading.finish, "_ended_count"),
        )

        def timer(label, function):
            def call(*args, **kwargs):
                started = time.perf_counter()
                try:
                    return function(*args, **kwargs)
                finally:
                    spent[label].append(time.perf_counter() - started)

            return call

        spent.update((label, []) for label, _, _ in steps)  # printed in this order
        originals = [(owner, name, getattr(owner, name)) for _, owner, name in steps]
        for (label, owner, name), (_, _, function) in zip(steps, originals, strict=True):
            setattr(owner, name, timer(label, function))
        try:
            yield
        finally:
            for owner, name, function in originals:
                setattr(owner, name, function)

    @contextlib.contextmanager
    def count_statements(sent):
        # A plain counter, not Django's debug cursor: the timed path pays nothing for it.
        # Every statement sent counts (none of ours has a ";" in a literal), and so does the
        # transaction control that never reaches execute(): a BEGIN each time a transaction
        # opens (psycopg sends it before the first statement), a COMMIT or ROLLBACK each
        # time one ends. Savepoints go through execute().
        def wrapper(execute, sql, params, many, context):
            sent.extend(sql.strip().rstrip(";").split(";"))
            return execute(sql, params, many, context)

        def counted(method, label, *, when=lambda *args: True):
            def call(*args, **kwargs):
                if when(*args):
                    sent.append(label)
                return method(*args, **kwargs)

            return call

        wrapped = connections["default"]
        names = ("set_autocommit", "commit", "rollback")
        originals = {name: getattr(wrapped, name) for name in names}
        wrapped.set_autocommit = counted(
            originals["set_autocommit"], "BEGIN", when=lambda on: not on
        )
        wrapped.commit = counted(originals["commit"], "COMMIT")
        wrapped.rollback = counted(originals["rollback"], "ROLLBACK")
        try:
            with connection.execute_wrapper(wrapper):
                yield
        finally:
            for name in originals:
                delattr(wrapped, name)

    def full_once(proposal, sent=None):
        sent = [] if sent is None else sent
        with count_statements(sent):
            started = time.perf_counter()
            outcome = execution_run(proposal=proposal, client=client)
            elapsed = time.perf_counter() - started
        assert outcome.execution.status == "SUBMITTED", outcome
        return elapsed, len(sent)

    readonly = ReadonlyClient()

    def bare_once(priced=False):
        """The bare path; `priced` reads the market's price first, as every safe execution
        must (the drift guard compares it with the proposal's)."""
        client_order_id = uuid.uuid4()
        started = time.perf_counter()
        if priced:
            readonly.ticker_price("BTC-EUR")
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO bench_bare (client_order_id, status) VALUES (%s, 'SUBMITTING')"
                " RETURNING id",
                [client_order_id],
            )
            row_id = cursor.fetchone()[0]
        order = client.place_market_order(
            market="BTC-EUR",
            side="buy",
            client_order_id=client_order_id,
            amount_quote=Decimal("25.00"),
        )
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE bench_bare SET status = 'SUBMITTED', order_id = %s WHERE id = %s",
                [order["orderId"], row_id],
            )
        return time.perf_counter() - started

    def measure(runs, rounds=4, policy=None):
        """Full and bare runs alternate one by one, so machine noise hits both alike. Each
        round is a new user (or `policy`'s), so caps and recent trades stay at a realistic
        size."""
        full, bare, priced, statements = [], [], [], []
        for _ in range(rounds):
            user = (policy or new_policy()).user
            proposals = [
                TradeProposalFactory(user=user, approved=True) for _ in range(runs // rounds)
            ]
            for proposal in proposals:
                elapsed, count = full_once(proposal)
                full.append(elapsed)
                statements.append(count)
                bare.append(bare_once())
                priced.append(bare_once(priced=True))
        return full, bare, priced, statements

    def fill_history(cursor, per_user, minutes_apart=1):
        """`per_user` executed buys, each with its fill, for every user in bulk_users."""
        cursor.execute(
            "INSERT INTO trade_proposals (user_id, market, side, amount_eur, confidence,"
            " rationale, status, expires_at, source, policy_hash, policy_snapshot,"
            " override_cooldown, override_anti_flip, override_reason, decided_at,"
            " decision_reason, created_at, updated_at)"
            " SELECT u.id, 'BTC-EUR', 'buy', 25, 75, '', 'EXECUTED', now(), 'scan', '', '{}',"
            " false, false, '', now() - (g * %s || ' minutes')::interval, '',"
            " now() - (g * %s || ' minutes')::interval, now()"
            " FROM bulk_users u, generate_series(1, %s) g",
            [minutes_apart, minutes_apart, per_user],
        )
        cursor.execute(
            "INSERT INTO trade_executions (user_id, proposal_id, client_order_id, status,"
            " market, side, amount_eur, exchange_order_id, preflight_result, policy_hash,"
            " policy_snapshot, error_code, error_message, claimed_at, submitting_at,"
            " finished_at, reconcile_attempts, created_at, updated_at)"
            " SELECT p.user_id, p.id, gen_random_uuid(), 'SUBMITTED', p.market, p.side,"
            " p.amount_eur, 'bulk-' || p.id, '{}', '', '{}', '', '', p.created_at,"
            " p.created_at, p.created_at, 0, p.created_at, p.created_at"
            " FROM trade_proposals p WHERE p.user_id IN (SELECT id FROM bulk_users)"
        )
        cursor.execute(
            "INSERT INTO trade_history (user_id, execution_id, market, asset, side, amount,"
            " amount_eur, price, fee, executed_at)"
            " SELECT e.user_id, e.id, e.market, 'BTC', e.side, 0.0005, 25, 50000, 0.06,"
            " e.claimed_at FROM trade_executions e"
            " WHERE e.user_id IN (SELECT id FROM bulk_users)"
        )

    def fill_big_tables(rows):
        users = 1000
        per_user = rows // users
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO auth_user (username, password, is_superuser, first_name, last_name,"
                " email, is_staff, is_active, date_joined)"
                " SELECT 'bulk' || g, '!', false, '', '', '', false, true, now()"
                " FROM generate_series(1, %s) g",
                [users],
            )
            cursor.execute(
                "CREATE TEMP TABLE bulk_users AS"
                " SELECT id FROM auth_user WHERE username LIKE 'bulk%%'"
            )
            fill_history(cursor, per_user)
            cursor.execute(
                "INSERT INTO gpt_usage_log (user_id, model, reason, prompt_tokens,"
                " completion_tokens, tokens_estimate, status, error, created_at, finished_at)"
                " SELECT u.id, 'gpt-4o-mini', 'scan', 700, 80, 800, 'SUCCEEDED', '',"
                " now() - (g || ' minutes')::interval, now() - (g || ' minutes')::interval"
                " FROM bulk_users u, generate_series(1, %s) g",
                [per_user],
            )
            cursor.execute("ANALYZE")

    def report(label, timings):
        median = statistics.median(timings) * 1000
        p99 = percentile(timings, 0.99) * 1000
        print(f"{label:<34} median {median:7.2f} ms   p99 {p99:7.2f} ms   n={len(timings)}")
        return median

    # Warm up connections, caches and the simulator.
    measure(20, rounds=1)
    sent = []
    full_once(TradeProposalFactory(user=new_policy().user, approved=True), sent)
    print("the statements of one full execute, in order:")
    for number, sql in enumerate(sent, 1):
        print(f"  {number:2}. {' '.join(sql.split())[:110]}")

    full, bare, priced, statements = measure(args.runs)
    full_small = report("full execute (small tables)", full)
    bare_small = report("bare INSERT+POST+UPDATE", bare)
    priced_small = report("bare with the price read", priced)
    print(f"{'overhead ratio full/bare':<34} {full_small / bare_small:.2f}x   (goal <= 2x)")
    print(f"{'overhead ratio full/bare with price':<34} {full_small / priced_small:.2f}x")
    print(
        f"{'SQL statements per execution':<34} median {statistics.median(statements):.0f}"
        f"   max {max(statements)}   (goal <= 15; every BEGIN and COMMIT included)"
    )

    if args.steps:
        spent = {}
        with timed_steps(spent):
            steps_full, steps_bare, _, _ = measure(args.runs)
        print(f"each step of the full path, timed in a round of its own (n={len(steps_full)}):")
        for label, timings in spent.items():
            print(f"  {label:<32} median {statistics.median(timings) * 1000:7.2f} ms")
        full_median, bare_median = statistics.median(steps_full), statistics.median(steps_bare)
        print(f"  {'(full / bare in this round)':<32} {full_median / bare_median:.2f}x")
        # What one statement costs at the least through the ORM: the stop row's one column.
        from trading.models import EmergencyStop

        stop_reads = []
        for _ in range(args.runs):
            started = time.perf_counter()
            EmergencyStop.objects.filter(pk=EmergencyStop.SINGLETON_ID).values_list(
                "active"
            ).first()
            stop_reads.append(time.perf_counter() - started)
        least = statistics.median(stop_reads) * 1000
        print(f"  {'one-column ORM read (the least)':<32} median {least:7.2f} ms")

    print(f"filling trade_history and gpt_usage_log with {args.big_rows:,} rows each ...")
    started = time.perf_counter()
    fill_big_tables(args.big_rows)
    print(f"  filled in {time.perf_counter() - started:.0f} s")
    balances_refresh()  # as the scan worker does: the recheck trusts a recent snapshot only
    measure(20, rounds=1)
    full_big, bare_big, _, _ = measure(args.runs)
    big = report("full execute (1M-row tables)", full_big)
    bare_b = report("bare INSERT+POST+UPDATE (1M)", bare_big)
    print(f"{'ratio 1M rows / small tables':<34} {big / full_small:.2f}x   (goal <= 1.2x)")
    print(f"{'overhead ratio at 1M rows':<34} {big / bare_b:.2f}x")
    # The two phases run minutes apart: the bare path, which the big tables do not touch,
    # shows how much the machine itself changed in between.
    print(f"{'bare path 1M phase / small phase':<34} {bare_b / bare_small:.2f}x   (machine drift)")

    # Users with a long history of their own, as many rounds as the small phase: each one's
    # first execute keeps their ledger checkpoint, the later ones go on from it.
    print(f"giving each of 4 users {args.history:,} fills, one an hour ...")
    full_long, bare_long, statements_long, firsts = [], [], [], []
    for _ in range(4):
        policy = new_policy()
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE bulk_users")
            cursor.execute(
                "CREATE TEMP TABLE bulk_users AS SELECT %s::bigint AS id", [policy.user_id]
            )
            fill_history(cursor, args.history, minutes_apart=60)
            cursor.execute("ANALYZE")
        firsts.append(full_once(TradeProposalFactory(user=policy.user, approved=True)))
        full, bare, _, statements = measure(args.runs // 4, rounds=1, policy=policy)
        full_long.extend(full)
        bare_long.extend(bare)
        statements_long.extend(statements)
    first = statistics.median(elapsed for elapsed, _ in firsts) * 1000
    label = "first execute (keeps a checkpoint)"
    print(f"{label:<34} median {first:7.2f} ms   statements {[count for _, count in firsts]}")
    long = report(f"full execute ({args.history:,} fills)", full_long)
    bare_l = report(f"bare INSERT+POST+UPDATE ({args.history:,})", bare_long)
    print(f"{'ratio long history / small tables':<34} {long / full_small:.2f}x")
    print(f"{'overhead ratio with long history':<34} {long / bare_l:.2f}x")
    print(
        f"{'SQL statements, long history':<34} median {statistics.median(statements_long):.0f}"
        f"   max {max(statements_long)}"
    )
    simulator.terminate()


if __name__ == "__main__":
    main()
