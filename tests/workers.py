"""Real Celery worker and beat processes for tests, on real Redis and the test database.

Each helper is a context manager that starts one subprocess in its own session, waits until
it says it is ready, yields a CeleryProcess, and on exit stops it with SIGTERM (a warm
shutdown: running tasks finish), then SIGKILL after `stop_timeout`.

    with celery_worker(queue="scan", env={"ORACLE_ROLE": "scan", ...}) as worker:
        app.send_task("scheduler.tasks.run_scan_job", args=[job_id, token])
        wait_for(lambda: worker.log().count("succeeded in") == 1)

    with celery_beat(env={"ORACLE_ROLE": "beat"}, name="a") as beat:
        ...  # fires the django-celery-beat entries of the test database

The child gets this process's environment, plus DATABASE_URL (the test database pytest
created), CELERY_BROKER_URL (this run's Redis db), CACHE_URL, plus `env`, which wins. Put
the keys a role may hold in `env` and blank the others ("BITVAVO_TRADE_KEY": "") so the
child cannot inherit them. Tests using these need `django_db(transaction=True)`: the child
only sees committed rows. Purge the queue first (`queue_purge`) if earlier tests may have
left messages in it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent


def database_url(role: str | None = None) -> str:
    """The test database as a URL for a child process; as `role` (see db_roles) if given."""
    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    auth = role or db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def child_env(env: dict[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        **env,
    }


class CeleryProcess:
    def __init__(self, process: subprocess.Popen, log_path: Path) -> None:
        self.process = process
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def children(self) -> list[int]:
        """The pool's processes (prefork): kill one to simulate a crash mid-task."""
        found = subprocess.run(
            ["pgrep", "-P", str(self.pid)], capture_output=True, text=True, check=False
        )
        return [int(pid) for pid in found.stdout.split()]


@contextlib.contextmanager
def celery_process(
    args: list[str],
    *,
    env: dict[str, str],
    ready_line: str,
    ready_timeout: float = 60,
    stop_timeout: float = 20,
) -> Iterator[CeleryProcess]:
    """Runs `celery -A config <args>` until the block ends; ready once `ready_line` is logged."""
    log = tempfile.NamedTemporaryFile(prefix="celery-", suffix=".log", delete=False)
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", *args],
        cwd=ROOT,
        env=child_env(env),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the pool children stop with it
    )
    child = CeleryProcess(process, Path(log.name))
    try:
        deadline = time.monotonic() + ready_timeout
        while ready_line not in child.log():
            if process.poll() is not None:
                raise RuntimeError(f"celery exited with {process.returncode}:\n{child.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"celery not ready after {ready_timeout}s:\n{child.log()}")
            time.sleep(0.1)
        yield child
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=stop_timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()
        os.unlink(log.name)


def celery_worker(
    *, queue: str, env: dict[str, str], concurrency: int = 2, name: str = "worker"
) -> contextlib.AbstractContextManager[CeleryProcess]:
    """A prefork worker consuming only `queue`."""
    return celery_process(
        [
            "worker",
            "-Q",
            queue,
            "-c",
            str(concurrency),
            "-n",
            f"{name}-{queue}-{os.getpid()}-{time.monotonic_ns()}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "info",
        ],
        env=env,
        ready_line=" ready.",
    )


def celery_beat(
    *, env: dict[str, str], name: str = "beat", max_interval: float = 1
) -> contextlib.AbstractContextManager[CeleryProcess]:
    """A beat on the database schedule (settings' DatabaseScheduler); several may run at once.

    `max_interval` is how often it rereads the schedule, so short test intervals fire on time.
    """
    return celery_process(
        [
            "beat",
            "-l",
            "info",
            "--max-interval",
            str(max_interval),
            "--pidfile=",
            "-s",
            os.path.join(tempfile.gettempdir(), f"celerybeat-{name}-{os.getpid()}"),
        ],
        env=env,
        ready_line="beat: Starting",
    )


def web_process_report(script: str, *args: str, env: dict[str, str]) -> dict:
    """Runs `script` in a fresh web-role Python process with `env` (no exchange or LLM keys
    from this process's environment) and returns the JSON object its last output line prints."""
    environment = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("BITVAVO_") and k != "OPENAI_API_KEY"
    }
    environment.update(ORACLE_ROLE="web", DJANGO_SETTINGS_MODULE="config.settings", **env)
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def wait_for(
    condition: Callable[[], bool],
    *,
    timeout: float = 60,
    what: str = "condition",
    every: float = 0.2,
):
    """Polls `condition` every `every` seconds until true; fails after `timeout`. In a
    transactional test every query runs in autocommit, so each poll sees what the children
    committed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def queue_drain(queue: str) -> list[tuple[str, list]]:
    """Takes every message off `queue` on the test broker: [(task name, args)], oldest first."""
    from config.celery import app

    taken = []
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            args, _kwargs, _embed = message.decode()
            taken.append((message.headers["task"], args))
    return taken


def sqlite_demo(tmp_path: Path, env: dict[str, str]) -> Callable[..., str]:
    """A runner of `python ARGS...` on a fresh SQLite demo database under `tmp_path` (a
    filesystem cache, an in-memory broker, plus `env`): each call asserts success and
    returns stdout. The database is migrated and set up (`demo_setup`) first."""
    environment = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        "CACHE_URL": f"filecache://{tmp_path / 'cache'}",
        "CELERY_BROKER_URL": "memory://",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        **env,
    }

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, *args], cwd=ROOT, env=environment, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    run("manage.py", "migrate", "--noinput")
    run("manage.py", "demo_setup")
    return run
