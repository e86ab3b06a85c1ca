"""Claim throughput: scan_jobs_claim_due() next to a bare SKIP LOCKED UPDATE loop.

    python bench/claim_bench.py [--jobs 10000] [--processes 4] [--batch 100] [--rounds 5]

Each round makes `jobs` jobs due and lets `processes` competing processes claim until none
is left, first through the service, then through one bare statement per batch:

    UPDATE scan_jobs SET ... WHERE id IN (SELECT id ... FOR UPDATE SKIP LOCKED LIMIT n)
    RETURNING id

Prints jobs/s for both (medians over the rounds), their ratio, and double claims (every
claim is checked against the others and against the table; must be 0). It runs on a
PostgreSQL database of its own, which it drops and creates (BENCH_CLAIM_DATABASE_URL).
"""

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import recreate_database  # noqa: E402 - needs the path above

BENCH_DB = os.environ.get(
    "BENCH_CLAIM_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/oracle_bench_claim"
)
os.environ["DATABASE_URL"] = BENCH_DB
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

TTL = timedelta(minutes=2)
BARE_CLAIM = """
    UPDATE scan_jobs
       SET locked_by = %s, locked_at = now(), lock_token = gen_random_uuid(), updated_at = now(),
           lock_expires_at = now() + interval '2 minutes',
           next_run_at = now() + interval '2 minutes'
     WHERE id IN (
            SELECT id FROM scan_jobs
             WHERE enabled AND next_run_at <= now()
               AND (lock_token IS NULL OR lock_expires_at <= now())
             ORDER BY next_run_at
             LIMIT %s
               FOR UPDATE SKIP LOCKED)
    RETURNING id
"""


def claim_with_service(owner: str, batch: int) -> list[int]:
    from scheduler.services import scan_jobs_claim_due

    claimed = []
    while claims := scan_jobs_claim_due(owner=owner, limit=batch, ttl=TTL):
        claimed += [pk for pk, _ in claims]
    return claimed


def claim_bare(owner: str, batch: int) -> list[int]:
    from django.db import connection

    claimed = []
    with connection.cursor() as cursor:
        while True:
            cursor.execute(BARE_CLAIM, [owner, batch])
            rows = cursor.fetchall()
            if not rows:
                return claimed
            claimed += [row[0] for row in rows]


def _claimer(kind, owner, batch, start, results):
    from django.db import connections

    claim = claim_with_service if kind == "service" else claim_bare
    connections["default"].ensure_connection()  # connecting is not part of claiming
    start.wait()
    began = time.perf_counter()  # CLOCK_MONOTONIC: comparable across processes
    claimed = claim(owner, batch)
    ended = time.perf_counter()
    connections.close_all()
    results.put((owner, began, ended, claimed))


def run_round(kind: str, *, jobs: int, processes: int, batch: int) -> tuple[float, int]:
    """(jobs per second, double claims) for one round of `processes` competing claimers."""
    from django.db import connection, connections

    from scheduler.models import ScanJob

    with connection.cursor() as cursor:
        # Due at different moments over the last ~3 hours, as a real backlog would be.
        cursor.execute(
            "UPDATE scan_jobs SET lock_token = NULL, locked_by = NULL, locked_at = NULL,"
            " lock_expires_at = NULL, next_run_at = now() - (id % 10000) * interval '1 second'"
        )
        cursor.execute("VACUUM ANALYZE scan_jobs")
    connections.close_all()
    fork = multiprocessing.get_context("fork")
    start, results = fork.Barrier(processes), fork.Queue()
    children = [
        fork.Process(target=_claimer, args=(kind, f"{kind}-{n}", batch, start, results))
        for n in range(processes)
    ]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=600) for _ in children]
    for child in children:
        child.join()
    elapsed = max(o[2] for o in outcomes) - min(o[1] for o in outcomes)
    claims = Counter(pk for o in outcomes for pk in o[3])
    doubles = sum(n - 1 for n in claims.values()) + (jobs - len(claims))
    # The table agrees: every job is leased by the one process that reported it.
    owner_of = {pk: o[0] for o in outcomes for pk in o[3]}
    for pk, locked_by in ScanJob.objects.values_list("pk", "locked_by"):
        doubles += owner_of.get(pk) != locked_by
    return jobs / elapsed, doubles


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    recreate_database(BENCH_DB)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from scheduler.models import ScanJob
    from scheduler.services import scan_jobs_claim_due  # noqa: F401 - imported before forking

    call_command("migrate", verbosity=0)
    users = [get_user_model().objects.create(username=f"bench{n}") for n in range(100)]
    ScanJob.objects.bulk_create(
        ScanJob(user=users[n % len(users)], markets=["BTC-EUR"]) for n in range(args.jobs)
    )

    rates = {"service": [], "bare": []}
    doubles = {"service": 0, "bare": 0}
    for _ in range(args.rounds):
        for kind in ("service", "bare"):  # interleaved: both see the same table and cache
            rate, double = run_round(
                kind, jobs=args.jobs, processes=args.processes, batch=args.batch
            )
            rates[kind].append(rate)
            doubles[kind] += double

    print(
        f"claim throughput: {args.jobs} due jobs, {args.processes} competing processes, "
        f"batch {args.batch}, {args.rounds} rounds, PostgreSQL, {os.cpu_count()} CPUs"
    )
    for kind, label in (("service", "scan_jobs_claim_due"), ("bare", "bare UPDATE loop  ")):
        runs = ", ".join(f"{r:,.0f}" for r in rates[kind])
        print(
            f"  {label}: median {statistics.median(rates[kind]):,.0f} jobs/s "
            f"(rounds: {runs}); double claims: {doubles[kind]}"
        )
    ratio = statistics.median(rates["service"]) / statistics.median(rates["bare"])
    print(f"  ratio service/bare: {ratio:.2f} (goal >= 0.70)")
    if doubles["service"] or doubles["bare"]:
        raise SystemExit("double claims found")


if __name__ == "__main__":
    main()
