"""Page and /metrics cost with 1,000 rows next to 1,000,000, and scans of many users on few
markets: exchange requests per round and LLM calls skipped.

    python bench/scale.py [--rows 1000000] [--x10] [--rounds 9] [--users 1000] [--skip-pages]
                          [--skip-scans] [--reuse-big]

Part 1. Two databases of their own (dropped, created, migrated): "small" holds 1,000
proposals, 1,000 proposal events, 1,000 LLM usage rows and 2,000 exchange calls; "big" holds
--rows of each (2 × --rows exchange calls; --x10 multiplies --rows by ten). Executions, fills,
decisions, outcomes and deliveries are a tenth of the proposals in both. Both have the same
1,000 users with a policy, and the measured API user has 1,000 proposals in both. Rows are
filled with generate_series in SQL (this script only). Every admin list, the dashboard,
every API list and /metrics are fetched through Django's test client, each database from a
thread of its own (its connection stays open), page by page alternating between the two,
so noise from the rest of the machine falls on both alike. Prints each page's median at
both sizes and the ratio.

Part 2. In a third database: --users users (a policy and a scan job each on the same 5
markets), the simulator in this process over HTTP, the offline advisor: every job is claimed
and run through scan_job_claim/scan_job_run from 8 threads: a first round, a second in the
same market bucket, a third in the next bucket (the shared snapshots dropped; the
simulator's price walk moves a step a minute, so most users' rounded snapshots differ).
Prints per round the exchange requests the simulator received, the weight it charged, LLM
calls made (budget admissions) and skipped (`unchanged` decisions), next to 20 users with
sharing off.

BENCH_SCALE_DATABASE_URL (default …/oracle_scale_bench; "_small", "_big", "_scans" appended),
CACHE_URL and CELERY_BROKER_URL point it elsewhere; the cache database is emptied.
"""

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import recreate_database  # noqa: E402 - needs the path above

BASE_URL = os.environ.get(
    "BENCH_SCALE_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/oracle_scale_bench"
)
os.environ["DATABASE_URL"] = f"{BASE_URL}_small"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.pop("OPENAI_API_KEY", None)  # the offline advisor
os.environ.setdefault("METRICS_BEARER_TOKEN", "bench-scrape")  # /metrics as Prometheus reads it

USERS = 1000
API_USER_PROPOSALS = 1000
SMALL_ROWS = 1000
MARKETS = ["BTC-EUR", "ETH-EUR", "SOL-EUR", "XRP-EUR", "ADA-EUR"]

# %(n)s rows over the last 30 days; the first API_USER_PROPOSALS belong to the API user.
FILL = [
    """INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email,
                              is_staff, is_active, date_joined)
       SELECT '!', false, 'u' || n, '', '', '', false, true, now()
         FROM generate_series(1, %(users)s) AS n""",
    """INSERT INTO trade_proposals (market, side, amount_eur, confidence, rationale, status,
              expires_at, source, policy_hash, policy_snapshot, override_cooldown,
              override_anti_flip, override_reason, decision_reason, created_at, updated_at,
              user_id, partially_executed)
       SELECT (ARRAY['BTC-EUR','ETH-EUR','SOL-EUR','XRP-EUR','ADA-EUR'])[1 + n %% 5],
              (ARRAY['buy','sell'])[1 + n %% 2], 25, 75, 'bench', 'EXPIRED',
              at + interval '1 hour', 'scan', repeat('a', 64), '{}', false, false, '', '',
              at, at,
              CASE WHEN n <= %(api)s THEN f.first ELSE f.first + 1 + n %% (%(users)s - 1) END,
              false
         FROM generate_series(1, %(n)s) AS n,
              (SELECT min(id) AS first FROM auth_user WHERE username LIKE 'u%%') AS f,
              LATERAL (SELECT now() - n * interval '1 second' * (2592000.0 / %(n)s) AS at) t""",
    """INSERT INTO trade_proposal_events (kind, data, created_at, user_id, proposal_id)
       SELECT 'created', '{}', created_at, user_id, id FROM trade_proposals""",
    """INSERT INTO gpt_usage_log (user_id, model, reason, prompt_tokens, completion_tokens,
              tokens_estimate, status, error, created_at, finished_at)
       SELECT f.first + n %% %(users)s, 'gpt-4o-mini', 'scan', 300, 40, 800,
              (ARRAY['SUCCEEDED','SUCCEEDED','SUCCEEDED','FAILED','REFUSED'])[1 + n %% 5],
              '', at, at
         FROM generate_series(1, %(n)s) AS n,
              (SELECT min(id) AS first FROM auth_user WHERE username LIKE 'u%%') AS f,
              LATERAL (SELECT now() - n * interval '1 second' * (2592000.0 / %(n)s) AS at) t""",
    """INSERT INTO exchange_calls (key_role, method, path, status_code, response_body,
              error_code, error_kind, latency_ms, client_order_id, created_at)
       SELECT CASE WHEN n %% 10 = 0 THEN 'trade' ELSE 'readonly' END,
              CASE WHEN n %% 10 = 0 THEN 'POST' ELSE 'GET' END,
              CASE WHEN n %% 10 = 0 THEN '/v2/order'
                   ELSE '/v2/BTC-EUR/candles?interval=1h&limit=48' END,
              200, '{"ok": true}', '', '', 20 + n %% 200,
              CASE WHEN n %% 10 = 0 THEN gen_random_uuid() END,
              now() - n * interval '1 second' * (2592000.0 / (2 * %(n)s))
         FROM generate_series(1, 2 * %(n)s) AS n""",
    """INSERT INTO trade_executions (client_order_id, status, market, side, amount_eur,
              exchange_order_id, preflight_result, policy_hash, policy_snapshot, error_code,
              error_message, claimed_at, created_at, updated_at, user_id, proposal_id,
              reconcile_attempts, exchange_status, partially_filled)
       SELECT gen_random_uuid(), 'FAILED', market, side, amount_eur, '', '{}', policy_hash,
              '{}', 'ORDER_REJECTED', 'bench', created_at, created_at, created_at, user_id, id,
              0, '', false
         FROM trade_proposals WHERE id %% 10 = 0""",
    """INSERT INTO trade_history (market, asset, side, amount, amount_eur, price, fee,
              executed_at, execution_id, user_id, fee_currency, fill_id)
       SELECT market, split_part(market, '-', 1), side, 0.0005, 25, 50000, 0.06, claimed_at,
              id, user_id, 'EUR', id::text
         FROM trade_executions""",
    """INSERT INTO advisor_decisions (advisor, model, prompt_version, input, input_hash,
              raw_reply, decision, reason, invalidation, created_at, user_id)
       SELECT 'offline', 'offline-momentum-v1', 'v2', '{}', '', '', 'no_trade', '', '',
              created_at, user_id
         FROM trade_proposals WHERE id %% 10 = 1""",
    """INSERT INTO proposal_outcomes (horizon_hours, candle_at, entry_price, price, net_return,
              hit, shadow_market, shadow_side, scored_at, proposal_id, user_id)
       SELECT 24, created_at, 100, 101, 0.01, true, '', '', created_at, id, user_id
         FROM trade_proposals WHERE id %% 10 = 2""",
    """INSERT INTO notification_deliveries (event, channel, destination, dedupe_key, subject,
              payload, status, attempt_count, attempts, last_error, created_at, updated_at,
              finished_at, user_id)
       SELECT 'kill_switch', 'email', 'x@example.com', 'bench:' || id, 'bench', '{}',
              'DELIVERED', 1, '[]', '', created_at, created_at, created_at, user_id
         FROM trade_proposals WHERE id %% 10 = 3""",
]

ADMIN_PAGES = [
    "/admin/trading/tradeproposal/",
    "/admin/trading/tradeproposal/?status__exact=EXPIRED",
    "/admin/trading/tradeexecution/",
    "/admin/trading/tradehistory/",
    "/admin/trading/proposalevent/",
    "/admin/trading/policy/",
    "/admin/exchange/exchangecall/",
    "/admin/exchange/exchangecall/?key_role=trade",
    "/admin/budget/gptusagelog/",
    "/admin/evaluation/advisordecision/",
    "/admin/evaluation/proposaloutcome/",
    "/admin/notifications/notificationdelivery/",
    "/admin/scheduler/scanjob/",
    "/admin/portfolio/portfoliosnapshot/",
    "/admin/dashboard/",
]
API_PAGES = [
    "/api/v1/proposals/",
    "/api/v1/proposals/?status=EXPIRED",
    "/api/v1/executions/",
    "/api/v1/notifications/deliveries/",
    "/api/v1/scan-jobs/",
]
OPEN_PAGES = ["/metrics"]


class Site:
    """One database served from a thread of its own: that thread's connection is bound to it
    and stays open, so alternating between the databases never reconnects."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = url.rsplit("/", 1)[1]
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.run(self._bind)

    def _bind(self) -> None:
        from django.db import connection

        connection.close()
        connection.settings_dict = {**connection.settings_dict, "NAME": self.name}

    def run(self, fn, *args):
        return self.pool.submit(fn, *args).result()


def has_rows(url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(url) as conn:
            return conn.execute("SELECT count(*) FROM trade_proposals").fetchone()[0] > 0
    except psycopg.Error:
        return False


def populate(url: str, rows: int, reuse: bool = False) -> dict:
    """Creates, migrates and fills one database (unless `reuse`); returns its clients (admin,
    API user). Runs in the database's own thread (Site)."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from scheduler.models import ScanJob
    from tests.factories import login_verified
    from trading.flows import account_flows_rebuild
    from trading.models import Policy

    started = time.perf_counter()
    if reuse:
        call_command("migrate", verbosity=0)  # indexes added since it was filled
    else:
        recreate_database(url)
        connection.close()
        call_command("migrate", verbosity=0)
        params = {"n": rows, "users": USERS, "api": API_USER_PROPOSALS}
        with connection.cursor() as cursor:
            for statement in FILL:
                cursor.execute(statement, params)
        account_flows_rebuild()  # the history was written in SQL, past the finish step
        users = list(get_user_model().objects.filter(username__startswith="u").order_by("pk"))
        Policy.objects.bulk_create([Policy(user=user, allowlist=MARKETS) for user in users])
        ScanJob.objects.bulk_create([ScanJob(user=user, markets=MARKETS) for user in users])
        get_user_model().objects.create_superuser("bench-admin", "a@x.io", "x")
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    users = list(get_user_model().objects.filter(username__startswith="u").order_by("pk")[:1])
    filled = time.perf_counter() - started
    admin = Client()
    # As staff who may move money sign in: with a code of their second factor.
    login_verified(admin, get_user_model().objects.get(username="bench-admin"))
    api = Client()
    api.force_login(users[0])
    return {"admin": admin, "api": api, "fill_seconds": filled}


def fetch(client, path: str) -> tuple[float, float]:
    """(page ms, of which in the database ms) of one GET."""
    from django.db import connection

    in_database = [0.0]

    def timed(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            in_database[0] += time.perf_counter() - started

    started = time.perf_counter()
    headers = {"Authorization": f"Bearer {os.environ['METRICS_BEARER_TOKEN']}"}
    with connection.execute_wrapper(timed):
        response = client.get(path, headers=headers if path == "/metrics" else None)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise SystemExit(f"{path}: HTTP {response.status_code}")
    return elapsed * 1000, in_database[0] * 1000


def pages(rows: int, rounds: int, reuse_big: bool) -> None:
    from core.counters import counter_add

    print(f"Part 1: pages at {SMALL_ROWS:,} rows and at {rows:,} rows")
    sites, clients = {}, {}
    for size, count in (("small", SMALL_ROWS), ("big", rows)):
        url = f"{BASE_URL}_{size}"
        reuse = size == "big" and reuse_big and has_rows(url)
        sites[size] = Site(url)
        clients[size] = sites[size].run(populate, url, count, reuse)
        verb = "reused" if reuse else "filled"
        print(f"  {verb} {size} ({count:,} rows a table) in {clients[size]['fill_seconds']:.1f} s")
    # Some history in the shared counters, as a running deployment has (both sizes alike).
    for status in ("200", "404", "429"):
        counter_add("exchange_calls", 5, labels=("trade", "POST", "/v2/order", status))
    counter_add("llm_calls", 5, labels=("SUCCEEDED", "gpt-4o-mini"))

    targets = [("admin", p) for p in ADMIN_PAGES] + [("api", p) for p in API_PAGES]
    targets += [("admin", p) for p in OPEN_PAGES]
    timings = {(size, path): [] for size in sites for _, path in targets}
    db_timings = {(size, path): [] for size in sites for _, path in targets}
    for round_no in range(rounds + 1):
        for who, path in targets:
            # Page by page, small then big, then big then small the next round.
            order = list(sites) if round_no % 2 else list(reversed(sites))
            for size in order:
                elapsed, in_database = sites[size].run(fetch, clients[size][who], path)
                if round_no:  # the first round warms caches and connections
                    timings[(size, path)].append(elapsed)
                    db_timings[(size, path)].append(in_database)
    print(f"  medians of {rounds} rounds, the two databases alternating page by page")
    print("  page: the whole request; db: the part spent in its SQL statements")
    print(
        f"  {'page':<52} {'small ms':>9} {'big ms':>9} {'ratio':>6}"
        f" {'db small':>9} {'db big':>9} {'ratio':>6}"
    )
    worst = worst_db = 0.0
    for _, path in targets:
        small = statistics.median(timings[("small", path)])
        big = statistics.median(timings[("big", path)])
        db_small = statistics.median(db_timings[("small", path)])
        db_big = statistics.median(db_timings[("big", path)])
        worst, worst_db = max(worst, big / small), max(worst_db, db_big / db_small)
        print(
            f"  {path:<52} {small:>9.1f} {big:>9.1f} {big / small:>5.2f}x"
            f" {db_small:>9.1f} {db_big:>9.1f} {db_big / db_small:>5.2f}x"
        )
    print(f"  worst ratio: page {worst:.2f}x, database {worst_db:.2f}x")
    for site in sites.values():
        site.pool.shutdown()


def scans(users: int) -> None:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.cache import cache
    from django.core.management import call_command
    from django.db import connection

    from budget.models import GptUsageLog
    from evaluation.models import AdvisorDecision
    from exchange.simulator.server import SimulatorServer
    from scheduler.models import ScanJob
    from scheduler.services import scan_job_claim, scan_job_run
    from trading.models import Policy

    print(f"\nPart 2: {users:,} users scanning the same {len(MARKETS)} markets")
    url = f"{BASE_URL}_scans"
    recreate_database(url)
    connection.close()
    connection.settings_dict["NAME"] = url.rsplit("/", 1)[1]
    call_command("migrate", verbosity=0)
    simulator = SimulatorServer(port=0).start()
    settings.BITVAVO_API_URL = simulator.api_url
    os.environ.update(simulator.readonly_env())
    for name in ("BITVAVO_TRADE_KEY", "BITVAVO_TRADE_SECRET"):
        os.environ.pop(name, None)
    User = get_user_model()
    User.objects.bulk_create([User(username=f"scan{n}", password="!") for n in range(users)])
    chosen = list(User.objects.order_by("pk"))
    Policy.objects.bulk_create(
        [
            Policy(user=u, allowlist=MARKETS, gpt_daily_limit=1000, gpt_hourly_limit=1000)
            for u in chosen
        ],
        ignore_conflicts=True,
    )

    def run(job_id: int) -> str:
        try:
            token = scan_job_claim(job_id=job_id, owner="bench")
            return scan_job_run(job_id=job_id, lock_token=token).status
        finally:
            connection.close()

    def scan_round(label: str, group: list) -> None:
        jobs = [ScanJob.objects.create(user=u, markets=MARKETS).pk for u in group]
        before = simulator.control.state()
        calls = GptUsageLog.objects.count()
        unchanged = AdvisorDecision.objects.filter(decision="unchanged").count()
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(run, jobs))
        seconds = time.perf_counter() - started
        after = simulator.control.state()
        ScanJob.objects.filter(pk__in=jobs).delete()
        made = GptUsageLog.objects.count() - calls
        skipped = AdvisorDecision.objects.filter(decision="unchanged").count() - unchanged
        failed = sum(status in ("FAILED", "OUTPUT_REJECTED", "LEASE_LOST") for status in statuses)
        print(
            f"  {label:<34} scans {len(jobs):>5}  exchange requests "
            f"{after['requests'] - before['requests']:>5}  weight "
            f"{after['weight_charged'] - before['weight_charged']:>5}  LLM calls {made:>5}  "
            f"skipped {skipped:>5}  failed {failed:>3}  {seconds:>6.1f} s"
        )

    try:
        settings.MARKET_SNAPSHOT_CACHE_SECONDS = 3600
        cache.clear()
        scan_round("round 1: first look", chosen)
        scan_round("round 2: same bucket again", chosen)
        cache.clear()  # the next bucket: snapshots are read again, the walk has moved on
        scan_round("round 3: next bucket", chosen)
        settings.MARKET_SNAPSHOT_CACHE_SECONDS = 0
        cache.clear()
        scan_round("sharing off, 20 users", chosen[:20])
    finally:
        simulator.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--x10", action="store_true", help="ten times --rows")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--skip-pages", action="store_true", help="part 2 only")
    parser.add_argument("--skip-scans", action="store_true", help="part 1 only")
    parser.add_argument(
        "--reuse-big", action="store_true", help="keep the big database of an earlier run"
    )
    args = parser.parse_args()
    rows = args.rows * (10 if args.x10 else 1)

    import django

    django.setup()
    from django.conf import settings
    from django.core.cache import cache

    settings.ALLOWED_HOSTS = ["*"]
    cache.clear()
    if not args.skip_pages:
        pages(rows, args.rounds, args.reuse_big)
    if not args.skip_scans:
        scans(args.users)


if __name__ == "__main__":
    main()
