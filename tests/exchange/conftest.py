"""Fixtures for the exchange tests, on top of the root `simulator` and `exchange` fixtures.

- `readonly_client` / `trade_client`: clients configured from the environment the root
  `exchange` fixture sets (both key pairs, ORACLE_ROLE=execute, BITVAVO_API_URL pointing at
  the simulator). The simulator checks signatures strictly here, so they prove our transport
  signs exactly the bytes it sends.
- `manage`: runs `manage.py <args>` as a separate process with this test's environment and
  simulator, for what must hold across processes (exit codes, a ban shared through Redis).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from exchange.readonly import ReadonlyClient

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def strict(exchange):
    exchange.control.set_strict_signing(True)
    return exchange


@pytest.fixture
def readonly_client(strict) -> ReadonlyClient:
    return ReadonlyClient()


@pytest.fixture
def trade_client(strict):
    from exchange.orders import TradeClient

    return TradeClient()


@pytest.fixture
def manage(exchange, settings):
    def run(*args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env={**os.environ, "BITVAVO_API_URL": settings.BITVAVO_API_URL, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run
