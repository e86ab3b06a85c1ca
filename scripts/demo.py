"""The whole product on one machine with no services: SQLite, a filesystem broker and the
Bitvavo simulator (paper mode), as separate processes under this one supervisor.

    python scripts/demo.py        (make demo: also creates .venv and installs)

Every process gets only the environment of its role: the scan worker the read-only key,
the execute worker the trade key; web, beat and the notify worker no exchange key. Ctrl-C
stops everything.
Set DATABASE_URL, CELERY_BROKER_URL, CACHE_URL, the keys and OPENAI_API_KEY to run it
against real services instead.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exchange.simulator.server import DEMO_READONLY, DEMO_TRADE  # noqa: E402

PORT = int(os.environ.get("DEMO_PORT", "8000"))
SIMULATOR_PORT = int(os.environ.get("DEMO_SIMULATOR_PORT", "8765"))
PYTHON = sys.executable
KEY_NAMES = (
    "BITVAVO_READONLY_KEY",
    "BITVAVO_READONLY_SECRET",
    "BITVAVO_TRADE_KEY",
    "BITVAVO_TRADE_SECRET",
    "OPENAI_API_KEY",
)


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in KEY_NAMES}
    env.setdefault("BITVAVO_API_URL", f"http://127.0.0.1:{SIMULATOR_PORT}/v2")
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def readonly_env() -> dict[str, str]:
    return {
        "BITVAVO_READONLY_KEY": os.environ.get("BITVAVO_READONLY_KEY", DEMO_READONLY[0]),
        "BITVAVO_READONLY_SECRET": os.environ.get("BITVAVO_READONLY_SECRET", DEMO_READONLY[1]),
        **(
            {"OPENAI_API_KEY": os.environ["OPENAI_API_KEY"]}
            if "OPENAI_API_KEY" in os.environ
            else {}
        ),
    }


def trade_env() -> dict[str, str]:
    return {
        "BITVAVO_TRADE_KEY": os.environ.get("BITVAVO_TRADE_KEY", DEMO_TRADE[0]),
        "BITVAVO_TRADE_SECRET": os.environ.get("BITVAVO_TRADE_SECRET", DEMO_TRADE[1]),
    }


def celery(*args: str) -> list[str]:
    return [PYTHON, "-m", "celery", "-A", "config", *args]


PROCESSES = [
    # name, command, extra environment (the role and its keys only)
    (
        "simulator",
        [PYTHON, "manage.py", "run_bitvavo_simulator", "--port", str(SIMULATOR_PORT)],
        {"ORACLE_ROLE": "simulator", **readonly_env(), **trade_env()},
    ),
    (
        "web",
        [PYTHON, "manage.py", "runserver", "--noreload", f"127.0.0.1:{PORT}"],
        {"ORACLE_ROLE": "web"},
    ),
    (
        "scan",
        celery("worker", "-Q", "scan,default", "-c", "1", "-n", "scan@%h", "-l", "info"),
        {"ORACLE_ROLE": "scan", **readonly_env()},
    ),
    (
        "execute",
        celery("worker", "-Q", "execute", "-c", "1", "-n", "execute@%h", "-l", "info"),
        {"ORACLE_ROLE": "execute", **trade_env()},
    ),
    (
        # Lookups of undecided orders, never beside an order (Bitvavo lists with the trade key).
        "reconcile",
        celery("worker", "-Q", "reconcile", "-c", "1", "-n", "reconcile@%h", "-l", "info"),
        {"ORACLE_ROLE": "execute", **trade_env()},
    ),
    (
        # Webhooks and e-mail (console backend by default): no exchange key at all.
        "notify",
        celery("worker", "-Q", "notify", "-c", "1", "-n", "notify@%h", "-l", "info"),
        {"ORACLE_ROLE": "notify"},
    ),
    (
        "beat",
        celery("beat", "-l", "info", "--pidfile=", "-s", str(ROOT / "var" / "beat")),
        {"ORACLE_ROLE": "beat"},
    ),
]


def run(command: list[str], env: dict[str, str]) -> str:
    return subprocess.run(
        command, cwd=ROOT, env={**base_env(), **env}, check=True, capture_output=True, text=True
    ).stdout


def pipe(name: str, stream) -> None:
    for line in stream:
        sys.stdout.write(f"{name:>9} | {line}")


def wait_for(url: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).close()  # noqa: S310 - our own localhost
            return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"{url} did not answer within {seconds:.0f}s")


def main() -> None:
    (ROOT / "var").mkdir(exist_ok=True)
    print("preparing the database ...")
    run([PYTHON, "manage.py", "migrate", "--noinput"], {})
    run([PYTHON, "manage.py", "setup_periodic_tasks"], {})
    login = run([PYTHON, "manage.py", "demo_setup"], {}).strip()

    children: list[subprocess.Popen] = []

    def stop_children() -> None:
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        for name, command, env in PROCESSES:
            child = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**base_env(), **env},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            children.append(child)
            threading.Thread(target=pipe, args=(name, child.stdout), daemon=True).start()
            if name == "simulator":
                wait_for(f"http://127.0.0.1:{SIMULATOR_PORT}/v2/time")
                run(
                    [
                        PYTHON,
                        "-c",
                        "import django; django.setup(); "
                        "from exchange.services import balances_refresh; balances_refresh()",
                    ],
                    {
                        "ORACLE_ROLE": "scan",
                        "DJANGO_SETTINGS_MODULE": "config.settings",
                        **readonly_env(),
                    },
                )
        wait_for(f"http://127.0.0.1:{PORT}/healthz")
        print(
            "\n  Auto Invest Oracle is running (paper mode, Bitvavo simulator).\n"
            f"  Approval console: http://127.0.0.1:{PORT}/admin/   {login}\n"
            f"  API docs:         http://127.0.0.1:{PORT}/api/v1/docs/\n"
            "  Proposals from the offline advisor appear within a minute. Ctrl-C stops all.\n",
            flush=True,
        )
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        failed = [
            name
            for (name, _, _), c in zip(PROCESSES, children, strict=True)
            if c.poll() is not None
        ]
        raise SystemExit(f"stopping: {', '.join(failed)} exited")
    except KeyboardInterrupt:
        pass
    finally:
        # Whatever ended the run (Ctrl-C, SIGTERM, a process that exited, a start that
        # timed out), no process is left behind.
        stop_children()


if __name__ == "__main__":
    main()
