"""Event counters shared by every process, for /metrics, added to as the work happens.

Each counter is one atomic integer in the cache (Redis in production), so every worker adds
to the same number and a scrape reads a handful of keys whatever the tables hold (and
whatever retention has pruned from them). Counting never gets in the way of the work: a
failure to count is logged and forgotten. A cache that is emptied starts the counters from
zero again, which Prometheus reads as a counter reset.

Plain counters have one value. Labelled counters (`LABELLED`) have one value per label
combination; the combinations seen are kept in an index key per counter, merged under a
short lock, so a scrape knows which keys to read.
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

# name: label names. The latency histogram's buckets are counters of their own ("le").
LABELLED = {
    "executions_ended": ("status", "error_code"),
    "exchange_calls": ("key_role", "method", "endpoint", "status"),
    "exchange_call_latency_bucket": ("key_role", "le"),
    "exchange_call_latency_count": ("key_role",),
    "exchange_call_latency_ms_sum": ("key_role",),
    "llm_calls": ("status", "model"),
    "llm_tokens": ("kind", "model"),
    "llm_budget_refusals": ("code",),
    "preflight_rejections": ("code",),
}
INDEX_LOCK_SECONDS = 5


def _key(name: str, labels: tuple[str, ...] = ()) -> str:
    return ":".join(("metrics:counter", name, *labels))


def _index_key(name: str) -> str:
    return f"metrics:labels:{name}"


def _incr(key: str, amount: int) -> None:
    cache.add(key, 0, timeout=None)
    try:
        cache.incr(key, amount)
    except ValueError:  # gone between add and incr (file cache only)
        cache.set(key, amount, timeout=None)


def counter_add(name: str, amount: int = 1, *, labels: tuple | None = None) -> None:
    if name not in COUNTERS and name not in LABELLED:
        raise ValueError(f"Unknown counter {name!r}.")
    names = LABELLED.get(name, ())
    values = tuple(str(value) for value in labels or ())
    if len(values) != len(names):
        raise ValueError(f"Counter {name!r} takes the labels {names}.")
    if amount <= 0:
        return
    try:
        _incr(_key(name, values), amount)
        if values:
            # Read every time, not remembered per process: an emptied cache re-learns it.
            _index_add(name, values)
    except Exception:
        logger.warning("could not count %s", name, exc_info=True)


def _index_add(name: str, values: tuple[str, ...]) -> bool:
    """Adds a label combination to the counter's index unless it is there; False when the
    index is busy (the next event with these labels tries again)."""
    index = _index_key(name)
    if tuple(values) in set(cache.get(index) or ()):
        return True
    lock = f"{index}:lock"
    if not cache.add(lock, 1, timeout=INDEX_LOCK_SECONDS):
        return False
    try:
        known = set(cache.get(index) or ())
        known.add(tuple(values))
        cache.set(index, sorted(known), timeout=None)
        return True
    finally:
        cache.delete(lock)


def counter_values() -> dict[str, int]:
    stored = cache.get_many([_key(name) for name in COUNTERS])
    return {name: int(stored.get(_key(name)) or 0) for name in COUNTERS}


def counter_series(name: str) -> dict[tuple[str, ...], int]:
    """A labelled counter's value per label combination (two cache reads)."""
    combinations = [tuple(values) for values in cache.get(_index_key(name)) or ()]
    stored = cache.get_many([_key(name, values) for values in combinations])
    return {values: int(stored.get(_key(name, values)) or 0) for values in combinations}
