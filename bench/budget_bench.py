"""LLM budget admission cost with 1,000 rows in gpt_usage_log next to 1,000,000 rows.

    python bench/budget_bench.py [--calls 500] [--big-rows 1000000]

Two databases of their own (dropped and created): one whose log holds 1,000 rows, one with
1,000,000 rows across 1,000 users over 30 days. In both, the measured user has the same
history (40 rows in the last 24 hours). One user's admissions (budget_admit: the per-user
lock row, the count over the day and hour windows, the insert, the commit) are timed one by
one, in blocks that alternate between the two databases, so noise from anything else on
the machine falls on both alike. Prints medians, p90 and the ratio.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import recreate_database  # noqa: E402 - needs the path above

BENCH_DB = os.environ.get(
    "BENCH_BUDGET_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/oracle_bench_budget"
)
os.environ["DATABASE_URL"] = BENCH_DB
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

USERS = 1000
BLOCK = 50
# Other users' history: every status, spread over the last 30 days.
FILL = """
    INSERT INTO gpt_usage_log (user_id, model, reason, prompt_tokens, completion_tokens,
                               tokens_estimate, status, error, created_at, finished_at)
    SELECT first.id + 1 + n %% %s, 'gpt-4o-mini', 'scan', 300, 40, 800,
           (ARRAY['SUCCEEDED', 'SUCCEEDED', 'SUCCEEDED', 'FAILED', 'REFUSED'])[1 + n %% 5],
           '', at, at
      FROM (SELECT min(id) AS id FROM auth_user) AS first,
           generate_series(1, %s) AS n,
           LATERAL (SELECT now() - (n %% 43200) * interval '1 minute' AS at) AS t
"""
# The measured user's own last 24 hours: the same in both databases.
HISTORY = """
    INSERT INTO gpt_usage_log (user_id, model, reason, tokens_estimate, status, error,
                               created_at, finished_at)
    SELECT %s, 'gpt-4o-mini', 'scan', 800,
           (ARRAY['SUCCEEDED', 'REFUSED'])[1 + n %% 2], '',
           now() - n * interval '35 minutes', now() - n * interval '35 minutes'
      FROM generate_series(1, 40) AS n
"""


def use_database(name: str) -> None:
    from django.db import connection

    connection.close()
    connection.settings_dict["NAME"] = name  # read again on the next connect


def populate(rows: int) -> int:
    """Migrates, adds the users, the measured user's history and the others' rows."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    User = get_user_model()
    User.objects.bulk_create(User(username=f"bench{n}") for n in range(USERS))
    user_id = User.objects.order_by("pk").values_list("pk", flat=True)[0]
    with connection.cursor() as cursor:
        cursor.execute(HISTORY, [user_id])
        cursor.execute(FILL, [USERS - 1, rows - 40])
        cursor.execute("VACUUM ANALYZE gpt_usage_log")
        # Write the fill out now, so no checkpoint of it runs during the timings.
        cursor.execute("CHECKPOINT")
    return user_id


def admit(user_id: int) -> float:
    from budget.services import budget_admit

    began = time.perf_counter()
    budget_admit(
        user_id=user_id,
        daily_limit=1_000_000,
        hourly_limit=1_000_000,
        model="gpt-4o-mini",
        reason="scan",
        tokens_estimate=800,
    )
    return (time.perf_counter() - began) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--big-rows", type=int, default=1_000_000)
    args = parser.parse_args()

    import django

    django.setup()
    from budget.models import GptUsageLog

    base = BENCH_DB.rsplit("/", 1)[1]
    databases = {f"{base}_1k": 1000, f"{base}_1m": args.big_rows}
    users, sizes = {}, {}
    for name, rows in databases.items():
        recreate_database(BENCH_DB.rsplit("/", 1)[0] + f"/{name}")
        use_database(name)
        users[name] = populate(rows)
        sizes[name] = GptUsageLog.objects.count()

    timings = {name: [] for name in databases}
    for _ in range(args.calls // BLOCK):
        for name in databases:
            use_database(name)
            for _ in range(5):  # after the reconnect: connection, plans, caches
                admit(users[name])
            timings[name] += [admit(users[name]) for _ in range(BLOCK)]

    print(
        f"budget admission: {args.calls} calls for one user per database, in alternating "
        f"blocks of {BLOCK}, PostgreSQL; median (p90)"
    )
    medians = []
    for name in databases:
        medians.append(statistics.median(timings[name]))
        p90 = statistics.quantiles(timings[name], n=10)[-1]
        print(f"  {sizes[name]:>9,} rows in gpt_usage_log: {medians[-1]:.3f} ms ({p90:.3f} ms)")
    print(f"  ratio 1M/1k: {medians[1] / medians[0]:.2f} (goal <= 1.20)")


if __name__ == "__main__":
    main()
