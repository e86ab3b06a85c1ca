"""Soak: the whole product as real processes for ten minutes, under faults and duplicates.

    python bench/soak.py [--duration 600] [--users 50] [--jobs 200] [--drain 180]

On this machine, loopback only. It drops and creates a PostgreSQL database of its own
(SOAK_DATABASE_URL), empties two Redis databases of its own (SOAK_CACHE_URL,
SOAK_BROKER_URL), migrates, and runs as separate processes, each with its own role's key
only: the Bitvavo simulator, the web server (runserver), beat, a scan worker (read-only
key, offline advisor) and an execute worker (trade key). It creates users with API tokens,
policies whose trade caps and LLM budgets are tight enough to refuse some calls, and scan
jobs every 1 to 3 minutes. Beat dispatches every 10 s and reconciles every 5 s, and a
SUBMITTING execution is looked up after 5 s, so unknown outcomes are settled within the run.

While it runs, the simulator gets random faults through its control API (the connection
dropped, 101 or 109 after the order is placed; 109 or an HTML 502 before; latency, some of it
past the read timeout and the access window), on order placement and on order lookups (with
--fill-modes, orders also fill partly under market protection, expire with nothing filled or
answer before their fills), and
four phases of a tenth of the run each put the whole stack through worse: the broker
unreachable (a TCP proxy in front of Redis cut), 105 bans on orders and lookups, the
exchange's clock 15 s ahead then 15 s behind, and order lookups slower than the read
timeout. Meanwhile a driver approves PENDING proposals through the API with each user's
token and executes them: a user's just-approved proposals at the same moment, each often
by several identical calls from threads, and some again much later. Then the faults stop
and a drain period lets the reconciler finish.

It reports orders at the simulator, executions by status, duplicates, orphans both ways,
trade cap, cooldown, anti-flip and LLM budget overshoots (per user, per sliding hour and per
UTC day), p50/p99 latencies and the memory of every process (pool children included) at the
start and the end, and exits 1 if a figure that must be 0 is not. Every loop is bounded in
time; every process it started is stopped on exit, Ctrl-C and errors included. The process
logs stay in var/soak/<time>/.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import math
import os
import random
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.common import recreate_database  # noqa: E402 - needs the path above

SOAK_DB = os.environ.get("SOAK_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/oracle_soak")
SOAK_CACHE = os.environ.get("SOAK_CACHE_URL", "redis://127.0.0.1:6379/10")
SOAK_BROKER = os.environ.get("SOAK_BROKER_URL", "redis://127.0.0.1:6379/11")
PYTHON = sys.executable
HOUR = timedelta(hours=1)
REQUEST_TIMEOUT = 30
# Enough of every asset that balance refusals stay rare: caps and budgets should refuse.
SIMULATOR_BALANCES = {
    "EUR": "1000000",
    "BTC": "20",
    "ETH": "400",
    "SOL": "8000",
    "XRP": "2000000",
    "ADA": "3000000",
}
# Beat entries (by task) run more often than in production, so a short run sees everything.
BEAT_EVERY_SECONDS = {
    "scheduler.tasks.dispatch_due_scans": 10,
    "trading.tasks.reconcile_submitting_executions": 5,
    "trading.tasks.expire_proposals": 20,
    "exchange.tasks.refresh_balances": 30,
    "scheduler.tasks.release_expired_locks": 30,
}
PRODUCT_SETTINGS = {
    "DEBUG": "false",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "EXECUTION_RECONCILE_AFTER_SECONDS": "5",
    "EXECUTION_RECONCILE_MIN_LOOKUPS": "2",
    "EXECUTION_CLAIM_STALE_SECONDS": "120",
    "PYTHONUNBUFFERED": "1",
}
# (kind, weight, seconds of latency); "latency" draws its seconds from the range.
ORDER_FAULTS = [
    ("drop_after_commit", 3, None),
    ("error_101_after_commit", 2, None),
    ("error_109_after_commit", 2, None),
    ("error_109_no_commit", 2, None),
    ("html_502_no_commit", 2, None),
    ("latency", 3, (0.2, 3.0)),
    # Around the 10 s read timeout and access window: answered late, placed after the
    # client gave up, or refused by the exchange (108) as too late.
    ("latency", 2, (9.0, 12.0)),
]
LOOKUP_FAULTS = [
    ("drop_after_commit", 1, None),
    ("html_502_no_commit", 1, None),
    ("error_109_no_commit", 1, None),
    ("latency", 1, (0.5, 2.0)),
]
# With --fill-modes: how some orders fill (SimulatorControl.set_fill_mode), by weight.
FILL_MODES = [
    ({"status": "canceledMarketProtection", "fraction": "0.5", "fills": 2}, 2),
    ({"status": "expired"}, 2),
    ({"answer": "new"}, 2),
    ({"answer": "new", "settle_after_lookups": 4}, 1),
    ({"answer": "partiallyFilled", "fills": 3}, 1),
    ({"answer": "unsettled", "fee_currency": "base"}, 1),
]


# --- processes ------------------------------------------------------------------------------


class Stack:
    """The product's processes, each in a session of its own (so its pool children are in its
    process group) with its output in `log_dir`. stop() ends them all, whatever happened."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen] = {}
        self._logs: list = []

    def start(self, name: str, command: list[str], env: dict[str, str]) -> None:
        log = open(self.log_dir / f"{name}.log", "w")  # closed in stop()
        self._logs.append(log)
        self.processes[name] = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def wait_for_log(self, name: str, text: str, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log(name):
            if self.processes[name].poll() is not None:
                raise SystemExit(f"{name} exited early:\n{self.log(name)[-3000:]}")
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"{name} not ready after {timeout:.0f}s:\n{self.log(name)[-3000:]}"
                )
            time.sleep(0.2)

    def exited(self) -> list[str]:
        return [name for name, process in self.processes.items() if process.poll() is not None]

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM to every leader (a warm shutdown: a worker lets its pool finish the running
        tasks), then SIGKILL to every process group, pool children included."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            # The leader may be gone while its pool children are not.
            _signal_group(process, signal.SIGKILL)
            process.wait()
        self.processes.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run_step(command: list[str], env: dict[str, str], *, timeout: float = 300) -> str:
    result = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} did not answer 200 within {timeout:.0f}s")


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants, from /proc."""
    parents: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The command name may hold spaces and parentheses: split after its last ")".
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(fields[1])].append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(parents.get(current, []))
    return tree


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def memory_snapshot(stack: Stack) -> dict[str, dict[int, int]]:
    """RSS in KiB of every process of the stack and its children: {name: {pid: kib}}."""
    snapshot = {}
    for name, process in stack.processes.items():
        sizes = {pid: rss_kib(pid) for pid in process_tree(process.pid)}
        snapshot[name] = {pid: kib for pid, kib in sizes.items() if kib is not None}
    return snapshot


# --- setup ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    user_id: int
    username: str
    token: str


def accounts_create(*, users: int, jobs: int, rng: random.Random) -> list[Account]:
    """Users with a token and a policy each, and `jobs` scan jobs spread over them.

    Caps, cooldowns, confidence minimums and LLM budgets vary per user, tight enough that
    some executions and some LLM calls are refused within minutes.
    """
    from django.contrib.auth import get_user_model

    from accounts.models import ApiToken
    from exchange.simulator.state import MARKETS
    from scheduler.services import scan_job_create
    from trading.services import policy_update

    markets = sorted(MARKETS)
    accounts = []
    for number in range(users):
        user = get_user_model().objects.create_user(f"soak-{number:03d}")
        gpt_hourly = rng.randint(4, 30)
        policy_update(
            user=user,
            changes={
                "trading_enabled": True,
                "allowlist": markets,
                "min_order_eur": rng.choice([10, 10, 15, 20]),
                "max_order_eur": 100,
                "min_confidence": rng.choice([25, 25, 25, 50, 75]),
                "cooldown_minutes": rng.choice([0, 0, 1, 2, 5]),
                "anti_flip_minutes": rng.choice([0, 2, 10]),
                "max_trades_per_hour": rng.randint(2, 8),
                "max_daily_trades": rng.randint(2, 12),
                "gpt_hourly_limit": gpt_hourly,
                "gpt_daily_limit": rng.randint(gpt_hourly // 2 + 1, 40),
                "proposal_ttl_minutes": rng.randint(2, 10),
                # Each user's share of the account: buys stop there, sells at what was bought.
                "allocation_eur": rng.choice([200, 500, 1000]),
            },
        )
        _, token = ApiToken.objects.create(user=user, name="soak", scope="trade")
        accounts.append(Account(user.pk, user.username, token))
    for number in range(jobs):
        account = accounts[number % users]
        scan_job_create(
            user=get_user_model().objects.get(pk=account.user_id),
            markets=rng.sample(markets, rng.choice([1, 2, 2, 3])),
            interval_minutes=rng.choice([1, 1, 2, 3]),
        )
    return accounts


def beat_schedule_shorten() -> None:
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    for task, seconds in BEAT_EVERY_SECONDS.items():
        schedule, _ = IntervalSchedule.objects.get_or_create(
            every=seconds, period=IntervalSchedule.SECONDS
        )
        if not PeriodicTask.objects.filter(task=task).update(interval=schedule):
            raise SystemExit(f"no beat entry runs {task}: setup_periodic_tasks changed?")


# --- the driver -----------------------------------------------------------------------------


@dataclass
class DriverRecord:
    """What the driver saw, shared by its threads (each update under `lock`)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    approved: int = 0
    rejected: int = 0
    approve_conflicts: Counter = field(default_factory=Counter)
    execute_seconds: list[float] = field(default_factory=list)
    execute_answers: Counter = field(default_factory=Counter)
    refusals: Counter = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    transport_errors: Counter = field(default_factory=Counter)
    bursts: Counter = field(default_factory=Counter)
    proposals_at_once: Counter = field(default_factory=Counter)
    # Proposals whose first execute call (single or burst) claimed them.
    claimed_at_approval: set = field(default_factory=set)

    def add(self, **changes) -> None:
        with self.lock:
            for name, value in changes.items():
                current = getattr(self, name)
                if isinstance(current, list):
                    current.append(value)
                elif isinstance(current, set):
                    current.add(value)
                elif isinstance(current, Counter):
                    current.update(value if isinstance(value, list | Counter) else [value])
                else:
                    setattr(self, name, current + value)


class Driver:
    """Approves PENDING proposals through the API and executes them, with duplicates."""

    def __init__(
        self,
        *,
        api_url: str,
        accounts: list[Account],
        threads: int,
        duplicate_share: float,
        reject_share: float,
        late_repeat_share: float,
        seed: int,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.accounts = accounts
        self.threads = threads
        self.duplicate_share = duplicate_share
        self.reject_share = reject_share
        self.late_repeat_share = late_repeat_share
        self.seed = seed
        self.record = DriverRecord()

    def run(self, *, deadline: float, stop: threading.Event) -> list[threading.Thread]:
        workers = []
        for number in range(self.threads):
            thread = threading.Thread(
                target=self._loop,
                args=(self.accounts[number :: self.threads], deadline, stop, self.seed + number),
                name=f"driver-{number}",
                daemon=True,
            )
            thread.start()
            workers.append(thread)
        return workers

    def _call(self, session, account: Account, method: str, path: str, body=None):
        """(status, JSON body or None); (None, None) when no answer came."""
        try:
            response = session.request(
                method,
                f"{self.api_url}/{path}",
                json=body,
                headers={"Authorization": f"Token {account.token}"},
                timeout=REQUEST_TIMEOUT,
            )
        except requests.RequestException as error:
            self.record.add(
                transport_errors=f"{method} {path.split('/')[0]}: {type(error).__name__}"
            )
            return None, None
        if response.status_code >= 500 and not _broker_unavailable(response):
            self.record.add(server_errors=f"{method} /{path} -> {response.status_code}")
        elif response.status_code >= 500:
            self.record.add(refusals=["BROKER_UNAVAILABLE"])
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, None

    def _loop(self, accounts: list[Account], deadline: float, stop: threading.Event, seed: int):
        rng = random.Random(seed)
        session = requests.Session()
        executed: list[tuple[Account, int]] = []
        while not stop.is_set() and time.monotonic() < deadline:
            worked = False
            for account in accounts:
                if stop.is_set() or time.monotonic() >= deadline:
                    break
                status, pending = self._call(session, account, "GET", "proposals/?status=PENDING")
                approved = []
                for proposal in (pending or [])[:10] if status == 200 else []:
                    worked = True
                    if rng.random() < self.reject_share:
                        self._reject(session, account, proposal["id"])
                    elif self._approve(session, account, proposal["id"]):
                        approved.append(proposal["id"])
                if approved:
                    self._execute_together(account, approved, rng)
                    executed += [(account, proposal_id) for proposal_id in approved]
            if executed and rng.random() < self.late_repeat_share:
                # Long after the first call: a repeat must change nothing.
                self._execute_once(*rng.choice(executed), None, kind="late repeat")
            # A pause between rounds lets a user's proposals pile up, to be executed together.
            stop.wait(rng.uniform(1, 10) if worked else 1.0)

    def _approve(self, session, account: Account, proposal_id: int) -> bool:
        status, body = self._call(session, account, "POST", f"proposals/{proposal_id}/approve/")
        if status == 200:
            self.record.add(approved=1)
            return True
        self.record.add(approve_conflicts=(body or {}).get("code", str(status)))
        return False

    def _reject(self, session, account: Account, proposal_id: int) -> None:
        status, _ = self._call(
            session,
            account,
            "POST",
            f"proposals/{proposal_id}/reject/",
            {"reason": "soak: rejected at random"},
        )
        if status == 200:
            self.record.add(rejected=1)

    def _execute_together(self, account: Account, proposal_ids: list[int], rng) -> None:
        """Executes a user's just-approved proposals all at once: each by one call or by 2-5
        identical ones, every call released at the same moment, so the user's lock decides."""
        calls = []
        for proposal_id in proposal_ids:
            copies = rng.randint(2, 5) if rng.random() < self.duplicate_share else 1
            self.record.add(bursts=copies)
            calls += [(proposal_id, "burst" if copies > 1 else "single")] * copies
        self.record.add(proposals_at_once=len(proposal_ids))
        barrier = threading.Barrier(len(calls)) if len(calls) > 1 else None
        threads = [
            threading.Thread(
                target=self._execute_once,
                args=(account, proposal_id, barrier),
                kwargs={"kind": kind},
                daemon=True,
            )
            for proposal_id, kind in calls
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=REQUEST_TIMEOUT + 15)

    def _execute_once(self, account, proposal_id, barrier, *, kind: str) -> None:
        session = requests.Session()
        if barrier is not None:
            try:
                barrier.wait(timeout=10)
            except threading.BrokenBarrierError:
                pass
        started = time.perf_counter()
        status, body = self._call(session, account, "POST", f"proposals/{proposal_id}/execute/", {})
        seconds = time.perf_counter() - started
        session.close()
        if status is None:
            return
        self.record.add(execute_seconds=seconds, execute_answers=f"{kind}: {status}")
        if kind != "late repeat" and status in (200, 202):
            self.record.add(claimed_at_approval=proposal_id)
        if status == 409 and body:
            self.record.add(
                refusals=(body.get("extra") or {}).get("failed_codes") or [body["code"]]
            )


def _broker_unavailable(response) -> bool:
    """The answer the API owes while the broker is down: 503 with its code, not a failure."""
    try:
        return response.status_code == 503 and response.json()["code"] == "BROKER_UNAVAILABLE"
    except (ValueError, KeyError, TypeError):
        return False


# --- faults ---------------------------------------------------------------------------------


def inject_faults(
    control,
    *,
    every: float,
    deadline: float,
    stop: threading.Event,
    seed: int,
    injected: Counter,
    fill_modes: bool = False,
) -> None:
    """Keeps one random fault waiting for the next order placement (and now and then one for
    the next order lookup) until the deadline: about one fault every `every` seconds. With
    `fill_modes`, also one of FILL_MODES waiting for the next order."""
    rng = random.Random(seed)

    def pick(faults):
        kind, _, seconds = rng.choices(faults, weights=[weight for _, weight, _ in faults])[0]
        return kind, rng.uniform(*seconds) if seconds else 0.0

    while not stop.wait(every) and time.monotonic() < deadline:
        try:
            waiting = {
                (fault["method"], fault["path"])
                for fault in control.state()["faults"]
                if fault["times"] > 0
            }
            if ("POST", "/order") not in waiting:
                kind, seconds = pick(ORDER_FAULTS)
                control.inject(kind, seconds=seconds)
                injected[f"POST /order {kind}{' long' if seconds > 9 else ''}"] += 1
            if ("GET", "/order") not in waiting and rng.random() < 0.3:
                kind, seconds = pick(LOOKUP_FAULTS)
                control.inject(kind, seconds=seconds, method="GET")
                injected[f"GET /order {kind}"] += 1
            if fill_modes and not control.state()["fill_modes"]:
                modes = [mode for mode, _ in FILL_MODES]
                (mode,) = rng.choices(modes, weights=[weight for _, weight in FILL_MODES])
                control.set_fill_mode(**mode)
                injected[f"fill mode {sorted(mode.items())}"] += 1
        except requests.RequestException as error:
            injected[f"injection failed: {type(error).__name__}"] += 1


class BrokerProxy:
    """A TCP proxy in front of the broker's Redis: every process talks to the broker through
    it, and cut() makes the broker unreachable (listener closed, connections reset) for a
    while, the way a broker outage looks to the product."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.open = threading.Event()
        self.open.set()
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def url(self, broker_url: str) -> str:
        db = broker_url.rsplit("/", 1)[1]
        return f"redis://127.0.0.1:{self.port}/{db}"

    def cut(self, seconds: float, stop: threading.Event) -> None:
        self.open.clear()
        with self.lock:
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
            self.sockets.clear()
        stop.wait(seconds)
        self.open.set()

    def _serve(self) -> None:
        while True:
            self.open.wait()
            listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
            listener.settimeout(0.2)
            while self.open.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                try:
                    upstream = socket.create_connection(self.target, timeout=5)
                except OSError:
                    client.close()
                    continue
                for sock in (client, upstream):  # idle connections stay up until cut()
                    sock.settimeout(None)
                with self.lock:
                    self.sockets += [client, upstream]
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()
            listener.close()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.close()


PHASES = ("broker outage", "105 bans", "clock skew", "slow lookups")


def run_phases(
    control, proxy: BrokerProxy, *, start: float, duration: float, stop, injected: Counter
) -> None:
    """The four phases, at 20/40/60/80 % of the load, each a tenth of it long."""
    length = duration / 10
    for index, phase in enumerate(PHASES):
        if stop.wait(max(0.0, start + duration * (index + 1) / 5 - time.monotonic())):
            return
        injected[f"phase: {phase} ({length:.0f}s)"] += 1
        try:
            if phase == "broker outage":
                proxy.cut(length, stop)
            elif phase == "105 bans":
                for method in ("POST", "GET"):
                    control.inject("ban_429", seconds=length, method=method, path="/order")
                stop.wait(length)
            elif phase == "clock skew":
                control.set_clock_skew(15_000)
                stop.wait(length / 2)
                control.set_clock_skew(-15_000)
                stop.wait(length / 2)
                control.set_clock_skew(0)
            else:  # past the 10 s read timeout, on every lookup of the phase's first ones
                control.inject("latency", seconds=12, times=8, method="GET", path="/order")
                stop.wait(length)
        except requests.RequestException as error:
            injected[f"phase {phase} failed: {type(error).__name__}"] += 1
    with contextlib.suppress(requests.RequestException):
        control.set_clock_skew(0)


# --- the report -----------------------------------------------------------------------------


def percentiles(values: list[float]) -> str:
    if not values:
        return "n=0"
    ordered = sorted(values)
    p99 = ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]
    return (
        f"n={len(ordered)}  p50 {statistics.median(ordered) * 1000:,.0f} ms  "
        f"p99 {p99 * 1000:,.0f} ms  max {ordered[-1] * 1000:,.0f} ms"
    )


def busiest_hour(times: list[datetime]) -> int:
    """The most events in any sliding hour (t - 1 h, t]: what the hourly rules count."""
    ordered, first, most = sorted(times), 0, 0
    for last, at in enumerate(ordered):
        while ordered[first] <= at - HOUR:
            first += 1
        most = max(most, last - first + 1)
    return most


def busiest_day(times: list[datetime]) -> int:
    """The most events in one UTC day: what the daily rules count."""
    return max(Counter(at.astimezone(UTC).date() for at in times).values(), default=0)


def spacing_violations(trades: list[tuple], minutes: int, *, opposite: bool) -> int:
    """Trades (at, asset, side) closer than `minutes` to an earlier trade of the same asset
    (cooldown), or of the same asset on the other side (anti-flip)."""
    if minutes <= 0:
        return 0
    gap, ordered, count = timedelta(minutes=minutes), sorted(trades), 0
    for index, (at, asset, side) in enumerate(ordered):
        if any(
            other_asset == asset and (other_side != side if opposite else True) and at - other < gap
            for other, other_asset, other_side in ordered[:index]
        ):
            count += 1
    return count


class Report:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.must_be_zero: dict[str, int] = {}

    def section(self, title: str) -> None:
        self.lines.append(f"\n== {title}")

    def line(self, label: str, value="") -> None:
        self.lines.append(f"  {label:<52} {value}")

    def zero(self, label: str, value: int) -> None:
        self.must_be_zero[label] = value
        self.line(f"{label} (must be 0)", f"{value}{'' if value == 0 else '   <-- NOT 0'}")

    def text(self) -> str:
        failed = [label for label, value in self.must_be_zero.items() if value]
        verdict = (
            "PASS: every must-be-0 figure is 0" if not failed else "FAIL: " + "; ".join(failed)
        )
        return "\n".join([*self.lines, "", verdict])


def report_orders_and_executions(report: Report, orders: list[dict]) -> dict:
    """Orders against executions: duplicates and orphans both ways. Returns the executions by
    client order id, for the other checks."""
    from trading.claim import client_order_id_for
    from trading.models import TradeExecution, TradeHistory, TradeProposal

    executions = {str(e.client_order_id): e for e in TradeExecution.objects.all()}
    statuses = Counter(e.status for e in executions.values())
    proposal_of = {
        str(client_order_id_for(pk)): pk
        for pk in TradeProposal.objects.values_list("pk", flat=True)
    }

    report.section("orders and executions")
    report.line("orders at the simulator", len(orders))
    for status in ("SUBMITTED", "FAILED"):
        report.line(f"executions {status}", statuses.get(status, 0))
    # The drain gives the reconciler time to decide every unknown outcome.
    for status in ("SUBMITTING", "CLAIMED"):
        report.zero(f"executions {status} after the drain", statuses.get(status, 0))
    failures = Counter(e.error_code for e in executions.values() if e.status == "FAILED")
    for code, count in failures.most_common():
        report.line(f"  FAILED {code}", count)

    per_client_order_id = Counter(order.get("clientOrderId") for order in orders)
    per_proposal = Counter(proposal_of.get(order.get("clientOrderId")) for order in orders)
    report.section("duplicates")
    report.zero(
        "clientOrderIds with more than one order",
        sum(1 for cid, n in per_client_order_id.items() if n > 1),
    )
    report.zero(
        "proposals with more than one order",
        sum(1 for pk, n in per_proposal.items() if n > 1 and pk is not None),
    )
    report.zero(
        "orders without our clientOrderId",
        sum(1 for order in orders if proposal_of.get(order.get("clientOrderId")) is None),
    )

    order_ids = {order["orderId"] for order in orders}
    without_submitted = Counter()
    for order in orders:
        execution = executions.get(order.get("clientOrderId"))
        if execution is None:
            without_submitted["no execution"] += 1
        elif execution.status != "SUBMITTED":
            without_submitted[f"execution {execution.status}"] += 1
        elif execution.exchange_order_id != order["orderId"]:
            without_submitted["execution names another order"] += 1
    report.section("orphans")
    report.zero("orders without a SUBMITTED execution", sum(without_submitted.values()))
    for reason, count in without_submitted.items():
        report.line(f"  {reason}", count)
    report.zero(
        "SUBMITTED executions without an order",
        sum(
            1
            for e in executions.values()
            if e.status == "SUBMITTED" and e.exchange_order_id not in order_ids
        ),
    )
    from exchange.models import ExchangeCall

    logged = {
        str(cid)
        for cid in ExchangeCall.objects.filter(method="POST", path__endswith="/order").values_list(
            "client_order_id", flat=True
        )
    }
    report.zero(
        "orders without their POST /order call row",
        sum(1 for order in orders if str(order.get("clientOrderId")) not in logged),
    )
    with_history = set(TradeHistory.objects.values_list("execution_id", flat=True))
    report.zero(
        "SUBMITTED executions without trade history",
        sum(1 for e in executions.values() if e.status == "SUBMITTED" and e.pk not in with_history),
    )
    return executions


def report_caps_and_budgets(report: Report, executions: dict, orders: list[dict]) -> None:
    """Per user, per sliding hour and per UTC day: trades against the policy's caps (and the
    cooldown and anti-flip spacing), LLM calls against the budget."""
    from budget.models import GptUsageLog
    from trading.models import Policy, TradeExecution, TradeProposal

    ordered = {order.get("clientOrderId") for order in orders}
    overridden = set(
        TradeProposal.objects.filter(override_cooldown=True).values_list("pk", flat=True)
    ) | set(TradeProposal.objects.filter(override_anti_flip=True).values_list("pk", flat=True))
    # What the caps count: every execution that may have produced an order, and any that did.
    trades = defaultdict(list)
    for cid, e in executions.items():
        if e.status in TradeExecution.LIVE_STATUSES or cid in ordered:
            trades[e.user_id].append((e.claimed_at, e.market.split("-")[0], e.side, e.proposal_id))
    calls = defaultdict(list)
    for user_id, at in GptUsageLog.objects.filter(status__in=GptUsageLog.COUNTED).values_list(
        "user_id", "created_at"
    ):
        calls[user_id].append(at)

    excess = Counter()
    users_at_cap = Counter()
    for policy in Policy.objects.all():
        mine = trades.get(policy.user_id, [])
        times = [at for at, *_ in mine]
        spaced = [(at, asset, side) for at, asset, side, pk in mine if pk not in overridden]
        for label, used, limit in (
            (
                "trades per hour over max_trades_per_hour",
                busiest_hour(times),
                policy.max_trades_per_hour,
            ),
            (
                "trades per UTC day over max_daily_trades",
                busiest_day(times),
                policy.max_daily_trades,
            ),
            (
                "LLM calls per hour over gpt_hourly_limit",
                busiest_hour(calls[policy.user_id]),
                policy.gpt_hourly_limit,
            ),
            (
                "LLM calls per UTC day over gpt_daily_limit",
                busiest_day(calls[policy.user_id]),
                policy.gpt_daily_limit,
            ),
        ):
            excess[label] += max(0, used - limit)
            users_at_cap[label] += used >= limit
        excess["trades inside the cooldown"] += spacing_violations(
            spaced, policy.cooldown_minutes, opposite=False
        )
        excess["opposite trades inside the anti-flip window"] += spacing_violations(
            spaced, policy.anti_flip_minutes, opposite=True
        )

    report.section("caps and budgets (per user; excess summed over users)")
    for label in (
        "trades per hour over max_trades_per_hour",
        "trades per UTC day over max_daily_trades",
        "trades inside the cooldown",
        "opposite trades inside the anti-flip window",
        "LLM calls per hour over gpt_hourly_limit",
        "LLM calls per UTC day over gpt_daily_limit",
    ):
        report.zero(label, excess[label])
        if label in users_at_cap:
            report.line("  users who reached that limit", users_at_cap[label])
    usage = Counter(
        (status, error if status == "REFUSED" else "")
        for status, error in GptUsageLog.objects.values_list("status", "error")
    )
    for (status, error), count in sorted(usage.items()):
        report.line(f"LLM calls {status} {error}".rstrip(), count)


def report_latency(report: Report, record: DriverRecord) -> None:
    """approve -> SUBMITTED from the database (sent at once vs settled by the reconciler) for
    proposals claimed by the execute calls right after approval (not by a late repeat once a
    cooldown or cap had passed), and the API execute call as the driver timed it."""
    from exchange.models import ExchangeCall
    from trading.models import TradeExecution

    answered = {
        str(cid)
        for cid in ExchangeCall.objects.filter(
            method="POST", path="/v2/order", status_code=200
        ).values_list("client_order_id", flat=True)
    }
    direct, reconciled = [], []
    for cid, decided_at, finished_at in TradeExecution.objects.filter(
        status="SUBMITTED", proposal_id__in=record.claimed_at_approval
    ).values_list("client_order_id", "proposal__decided_at", "finished_at"):
        seconds = (finished_at - decided_at).total_seconds()
        (direct if str(cid) in answered else reconciled).append(seconds)
    report.section("latency (the machine is shared: expect noise)")
    report.line("approve -> SUBMITTED, order answered at once", percentiles(direct))
    report.line("approve -> SUBMITTED, settled by the reconciler", percentiles(reconciled))
    report.line("approve -> SUBMITTED, all", percentiles(direct + reconciled))
    report.line("API execute call", percentiles(record.execute_seconds))


def report_memory(report: Report, start: dict, end: dict) -> None:
    report.section("memory: VmRSS in MiB at start -> end (each process, pool children included)")
    for name in start:
        pids = list(dict.fromkeys([*start[name], *end.get(name, {})]))
        for index, pid in enumerate(pids):
            role = "main" if index == 0 else "child"
            before, after = start[name].get(pid), end.get(name, {}).get(pid)
            shown = [f"{kib / 1024:7.1f}" if kib else "      -" for kib in (before, after)]
            report.line(f"{name:<9} {role:<5} pid {pid}", f"{shown[0]} -> {shown[1]}")


def drain(limit: float, stack: Stack) -> float:
    """Waits until no execution is CLAIMED or SUBMITTING (the reconciler has decided every
    unknown outcome), at most `limit` seconds. Returns how long it took."""
    from trading.models import TradeExecution

    started = time.monotonic()
    open_statuses = ("CLAIMED", "SUBMITTING")
    while time.monotonic() - started < limit and not stack.exited():
        if not TradeExecution.objects.filter(status__in=open_statuses).exists():
            break
        time.sleep(2)
    return time.monotonic() - started


def report_activity(report: Report, record: DriverRecord, injected: Counter, state: dict) -> None:
    from scheduler.models import ScanJob
    from trading.models import TradeProposal

    report.section("activity")
    proposals = Counter(TradeProposal.objects.values_list("status", flat=True))
    report.line(
        "proposals",
        f"{sum(proposals.values())}  "
        + ", ".join(f"{status} {count}" for status, count in sorted(proposals.items())),
    )
    report.line("approved / rejected through the API", f"{record.approved} / {record.rejected}")
    for code, count in record.approve_conflicts.most_common():
        report.line(f"  approve refused {code}", count)
    at_once = record.proposals_at_once
    report.line(
        "proposals executed by one call / by a burst (calls)",
        f"{record.bursts.get(1, 0)} / {sum(n for k, n in record.bursts.items() if k > 1)}"
        f" ({sum(k * n for k, n in record.bursts.items() if k > 1)})",
    )
    report.line(
        "one user's proposals executed at once: 2 / 3 / 4+",
        f"{at_once[2]} / {at_once[3]} / {sum(n for k, n in at_once.items() if k >= 4)}",
    )
    for answer, count in sorted(record.execute_answers.items()):
        report.line(f"  execute {answer}", count)
    for code, count in record.refusals.most_common():
        report.line(f"  preflight refused {code}", count)
    report.zero("API answers 5xx", len(record.server_errors))
    for text in record.server_errors[:5]:
        report.line(f"  {text}")
    for text, count in record.transport_errors.most_common():
        report.line(f"API transport error {text}", count)
    for kind, count in sorted(injected.items()):
        report.line(f"fault injected: {kind}", count)
    report.line("faults left unused", sum(f["times"] for f in state["faults"]))
    report.line("429 answers by the simulator", state["answered_429"])
    errors = Counter(ScanJob.objects.exclude(last_error="").values_list("last_error", flat=True))
    for error, count in errors.most_common(5):
        report.line(f"scan jobs whose last run said {error[:40]}", count)


def report_logs(report: Report, log_dir: Path) -> None:
    report.section(f"logs in {log_dir}")
    for path in sorted(log_dir.glob("*.log")):
        text = path.read_text(errors="replace")
        report.line(path.name, f"{text.count('Traceback')} tracebacks")


# --- main -------------------------------------------------------------------------------------


def environment_prepare() -> None:
    """This process sets up, drives through the API and reads the outcome: it holds no key,
    and no exchange or LLM setting of the caller's (the soak makes its own keys and runs the
    offline advisor). Every child inherits this environment and adds its role and its key."""
    for name in [name for name in os.environ if name.startswith(("BITVAVO_", "OPENAI_"))]:
        del os.environ[name]
    os.environ.update(
        DATABASE_URL=SOAK_DB,
        CACHE_URL=SOAK_CACHE,
        CELERY_BROKER_URL=SOAK_BROKER,
        ORACLE_ROLE="web",
        DJANGO_SETTINGS_MODULE="config.settings",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600, help="seconds of load")
    parser.add_argument("--drain", type=float, default=180, help="at most this long to settle")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--driver-threads", type=int, default=4)
    parser.add_argument("--scan-concurrency", type=int, default=2)
    parser.add_argument("--execute-concurrency", type=int, default=2)
    parser.add_argument("--fault-every", type=float, default=3.0, help="seconds between faults")
    parser.add_argument("--duplicate-share", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--fill-modes",
        action="store_true",
        help="also let orders fill partly, expire or answer before their fills",
    )
    args = parser.parse_args()
    environment_prepare()

    log_dir = ROOT / "var" / "soak" / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    log_dir.mkdir(parents=True, exist_ok=True)
    print(f"soak: {args.users} users, {args.jobs} scan jobs, {args.duration:.0f}s")
    print(f"soak: process logs in {log_dir}", flush=True)
    stack = Stack(log_dir)
    stop = threading.Event()
    atexit.register(stack.stop)
    # Ctrl-C and SIGTERM unwind through the finally below, even when started in the background.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        report = soak(args, stack, stop)
    except KeyboardInterrupt:
        print("soak: interrupted")
        return 130
    finally:
        stop.set()
        stack.stop()
    print(report.text())
    return 1 if any(report.must_be_zero.values()) else 0


def soak(args, stack: Stack, stop: threading.Event) -> Report:
    started = time.monotonic()
    recreate_database(SOAK_DB)
    import redis

    for url in (SOAK_CACHE, SOAK_BROKER):
        redis.Redis.from_url(url).flushdb()

    from exchange.simulator.server import random_key_pair

    readonly, trade = random_key_pair(), random_key_pair()
    readonly_env = {"BITVAVO_READONLY_KEY": readonly[0], "BITVAVO_READONLY_SECRET": readonly[1]}
    trade_env = {"BITVAVO_TRADE_KEY": trade[0], "BITVAVO_TRADE_SECRET": trade[1]}
    simulator_port, web_port = free_port(), free_port()
    broker = redis.Redis.from_url(SOAK_BROKER).connection_pool.connection_kwargs
    proxy = BrokerProxy((broker["host"], broker["port"]))
    base_env = {
        **os.environ,
        **PRODUCT_SETTINGS,
        "BITVAVO_API_URL": f"http://127.0.0.1:{simulator_port}/v2",
        "CELERY_BROKER_URL": proxy.url(SOAK_BROKER),
    }

    manage = [PYTHON, "manage.py"]
    run_step([*manage, "migrate", "--noinput"], base_env)
    run_step([*manage, "setup_periodic_tasks"], base_env)

    import django

    django.setup()
    from exchange.simulator.control import SimulatorControl

    accounts = accounts_create(users=args.users, jobs=args.jobs, rng=random.Random(args.seed))
    beat_schedule_shorten()

    balances = [f"--balance={asset}={amount}" for asset, amount in SIMULATOR_BALANCES.items()]
    stack.start(
        "simulator",
        [*manage, "run_bitvavo_simulator", "--port", str(simulator_port), *balances],
        {**base_env, "ORACLE_ROLE": "simulator", **readonly_env, **trade_env},
    )
    control = SimulatorControl(f"http://127.0.0.1:{simulator_port}")
    wait_for_http(f"http://127.0.0.1:{simulator_port}/v2/time", timeout=60)
    # The first balance snapshot, read with the read-only key, as the beat entry does later.
    run_step(
        [
            PYTHON,
            "-c",
            "import django; django.setup(); "
            "from exchange.services import balances_refresh; balances_refresh()",
        ],
        {**base_env, "ORACLE_ROLE": "scan", **readonly_env},
    )
    stack.start(
        "web",
        [*manage, "runserver", "--noreload", f"127.0.0.1:{web_port}"],
        {**base_env, "ORACLE_ROLE": "web"},
    )
    celery = [PYTHON, "-m", "celery", "-A", "config"]
    for role, queues, concurrency, keys in (
        ("scan", "scan,default", args.scan_concurrency, readonly_env),
        ("execute", "execute", args.execute_concurrency, trade_env),
        ("reconcile", "reconcile", 1, trade_env),
    ):
        stack.start(
            role,
            [*celery, "worker", "-Q", queues, "-c", str(concurrency)]
            + ["-n", f"soak-{role}-{os.getpid()}@%h", "-l", "info"],
            {**base_env, "ORACLE_ROLE": "scan" if role == "scan" else "execute", **keys},
        )
    wait_for_http(f"http://127.0.0.1:{web_port}/healthz", timeout=120)
    stack.wait_for_log("scan", " ready.", timeout=180)
    stack.wait_for_log("execute", " ready.", timeout=180)
    stack.wait_for_log("reconcile", " ready.", timeout=180)
    stack.start(
        "beat",
        [*celery, "beat", "-l", "info", "--max-interval", "2", "--pidfile="]
        + ["-s", str(stack.log_dir / "beat-schedule")],
        {**base_env, "ORACLE_ROLE": "beat"},
    )
    stack.wait_for_log("beat", "beat: Starting", timeout=120)
    memory_start = memory_snapshot(stack)
    print(f"soak: all processes up after {time.monotonic() - started:.0f}s; driving", flush=True)

    driver = Driver(
        api_url=f"http://127.0.0.1:{web_port}/api/v1",
        accounts=accounts,
        threads=args.driver_threads,
        duplicate_share=args.duplicate_share,
        reject_share=0.05,
        late_repeat_share=0.1,
        seed=args.seed,
    )
    deadline = time.monotonic() + args.duration
    injected: Counter = Counter()
    threads = driver.run(deadline=deadline, stop=stop)
    injector = threading.Thread(
        target=inject_faults,
        args=(control,),
        kwargs={
            "every": args.fault_every,
            "deadline": deadline,
            "stop": stop,
            "seed": args.seed,
            "injected": injected,
            "fill_modes": args.fill_modes,
        },
        daemon=True,
    )
    injector.start()
    phases = threading.Thread(
        target=run_phases,
        args=(control, proxy),
        kwargs={
            "start": deadline - args.duration,
            "duration": args.duration,
            "stop": stop,
            "injected": injected,
        },
        daemon=True,
    )
    phases.start()
    crashed: list[str] = []
    while time.monotonic() < deadline and not crashed:
        time.sleep(min(10.0, max(0.0, deadline - time.monotonic())))
        crashed = stack.exited()
        progress(args.duration - (deadline - time.monotonic()), driver.record, control)
    stop.set()
    for thread in [*threads, injector, phases]:
        thread.join(timeout=REQUEST_TIMEOUT + 20)
    control.reset_faults()

    drained = drain(args.drain, stack)
    memory_end = memory_snapshot(stack)
    orders = control.orders()
    simulator_state = control.state()
    crashed = crashed or stack.exited()
    stack.stop()

    report = Report()
    report.section("run")
    report.line("users / scan jobs", f"{args.users} / {args.jobs}")
    report.line("load / drain (seconds)", f"{args.duration:.0f} / {drained:.0f}")
    report.zero("processes that exited during the run", len(crashed))
    report_activity(report, driver.record, injected, simulator_state)
    executions = report_orders_and_executions(report, orders)
    report_caps_and_budgets(report, executions, orders)
    report_latency(report, driver.record)
    report_memory(report, memory_start, memory_end)
    report_logs(report, stack.log_dir)
    return report


def progress(elapsed: float, record: DriverRecord, control) -> None:
    try:
        orders = control.state()["orders"]
    except requests.RequestException:
        orders = "?"
    print(
        f"soak: {elapsed:4.0f}s  approved {record.approved}  "
        f"execute calls {len(record.execute_seconds)}  orders {orders}",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
