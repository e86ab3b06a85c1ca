"""Real Celery worker processes for tests: a subprocess per worker, on real Redis.

with celery_worker(queue="execute", env={...}) as worker:
    ...  # tasks sent to the queue run in that process; worker.pid, worker.children()
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent


def database_url() -> str:
    """The test database, which pytest-django created, as a URL for a child process."""
    db = settings.DATABASES["default"]
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class Worker:
    def __init__(self, process: subprocess.Popen, log_path: Path) -> None:
        self.process = process
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def children(self) -> list[int]:
        out = subprocess.run(
            ["pgrep", "-P", str(self.pid)], capture_output=True, text=True, check=False
        )
        return [int(pid) for pid in out.stdout.split()]


def worker_command(queue: str, concurrency: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "-Q",
        queue,
        "-c",
        str(concurrency),
        "--pool",
        "prefork",
        "-n",
        f"{queue}-{os.getpid()}-{time.monotonic_ns()}@%h",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-l",
        "info",
    ]


def child_env(env: dict[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        **env,
    }


@contextlib.contextmanager
def celery_process(command: list[str], *, env: dict[str, str], ready_line: str, timeout=60):
    """Runs a Celery process with `env` added until the block ends; yields a Worker."""
    log_file = tempfile.NamedTemporaryFile(prefix="celery-", suffix=".log", delete=False)
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=child_env(env),
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    worker = Worker(process, Path(log_file.name))
    try:
        deadline = time.monotonic() + timeout
        while ready_line not in worker.log():
            if process.poll() is not None:
                raise RuntimeError(f"exited with {process.returncode}:\n{worker.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready after {timeout}s:\n{worker.log()}")
            time.sleep(0.2)
        yield worker
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log_file.close()


def celery_worker(*, queue: str, env: dict[str, str], concurrency: int = 2):
    """A worker consuming `queue`."""
    return celery_process(worker_command(queue, concurrency), env=env, ready_line=" ready.")


def celery_beat(*, env: dict[str, str], name: str):
    """A beat on the database schedule; several may run at once."""
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "beat",
        "-l",
        "info",
        "--max-interval",
        "1",
        "--pidfile=",
        "-s",
        f"{tempfile.gettempdir()}/beat-{name}",
    ]
    return celery_process(command, env=env, ready_line="beat: Starting")


def start_worker_expecting_failure(*, queue: str, env: dict[str, str], timeout=60):
    """Runs a worker that should refuse to start; returns (exit code, output)."""
    result = subprocess.run(
        worker_command(queue, 1),
        cwd=ROOT,
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr
