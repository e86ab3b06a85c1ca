"""Event counters shared by every process, for /metrics.

Only for events no table records (scan claims, lease contention, lease recoveries); the rest
of /metrics is counted from the tables at scrape time. Each counter is one atomic integer in
the cache (Redis in production), so every worker adds to the same number. Counting never
gets in the way of the work: a failure to count is logged and forgotten.
"""

from __future__ import annotations

import logging

from django.core.cache import cache

logger = logging.getLogger(__name__)

COUNTERS = {
    "scan_jobs_claimed": "Scan jobs leased by a dispatch or a manual run",
    "scan_lease_contention": "Scan claims or runs that found the lease held or taken over",
    "scan_leases_expired": "Scan leases recovered after their holder died or overran",
    "llm_calls_skipped_unchanged": "Scans whose snapshot had not changed: no LLM call",
}


def _key(name: str) -> str:
    return f"metrics:counter:{name}"


def counter_add(name: str, amount: int = 1) -> None:
    if name not in COUNTERS:
        raise ValueError(f"Unknown counter {name!r}.")
    if amount <= 0:
        return
    try:
        cache.add(_key(name), 0, timeout=None)
        try:
            cache.incr(_key(name), amount)
        except ValueError:  # gone between add and incr (file cache only)
            cache.set(_key(name), amount, timeout=None)
    except Exception:
        logger.warning("could not count %s", name, exc_info=True)


def counter_values() -> dict[str, int]:
    stored = cache.get_many([_key(name) for name in COUNTERS])
    return {name: int(stored.get(_key(name)) or 0) for name in COUNTERS}
