import io
import os

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection

from exchange.simulator.server import SimulatorServer


def pytest_addoption(parser):
    parser.addoption(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run every selected test N times in a row (make test-repeat adds -x: the first "
        "failure stops the run)",
    )


def pytest_generate_tests(metafunc):
    count = metafunc.config.getoption("repeat")
    if count > 1:
        metafunc.fixturenames.append("_repeat_run")
        metafunc.parametrize("_repeat_run", range(1, count + 1), ids=lambda n: f"run{n}")


@pytest.fixture(autouse=True, scope="session")
def _no_connection_left_at_the_end(django_db_setup, django_db_blocker):
    """Child processes and threads may still hold connections to the test database when the
    session ends; dropping it would then fail with a warning. They are cut first."""
    yield
    if connection.vendor != "postgresql":
        return  # SQLite's file is removed, not dropped
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture(autouse=True, scope="session")
def _require_postgresql(request, django_db_setup, django_db_blocker):
    # Locking, constraints and row-level rules are what the tests prove: SQLite cannot, except
    # for the execution path the demo runs, which `make test` runs there too (`-m sqlite`).
    with django_db_blocker.unblock():
        sqlite_run = connection.vendor == "sqlite" and request.config.option.markexpr == "sqlite"
        if connection.vendor != "postgresql" and not sqlite_run:
            pytest.exit(
                "The tests need PostgreSQL: set DATABASE_URL (make test does) "
                f"— got the {connection.vendor} backend (only `-m sqlite` runs on SQLite).",
                returncode=3,
            )


@pytest.fixture(autouse=True)
def _emergency_stop_row(request):
    """Transactional tests empty every table; the stop row a migration creates comes back."""
    if request.node.get_closest_marker("django_db") is None:
        return
    request.getfixturevalue("_django_db_helper")
    from trading.models import EmergencyStop

    EmergencyStop.objects.get_or_create(id=EmergencyStop.SINGLETON_ID)


@pytest.fixture(scope="session")
def database_roles(django_db_setup, django_db_blocker) -> dict[str, str]:
    """The web and worker roles (`manage.py db_roles`) on the test database."""
    with django_db_blocker.unblock():
        call_command("db_roles", stdout=io.StringIO())
    return {"web": "oracle_web", "worker": "oracle_worker"}


@pytest.fixture(scope="session")
def simulator():
    """The Bitvavo simulator over real HTTP on a free port, for the whole session."""
    server = SimulatorServer(port=0).start()
    yield server
    server.stop()


class Exchange:
    """What a test needs of the exchange: its control API and the orders that reached it."""

    def __init__(self, server: SimulatorServer) -> None:
        self.server = server
        self.control = server.control
        self.api_url = server.api_url

    def orders(self) -> list[dict]:
        return self.control.orders()


@pytest.fixture
def exchange(simulator, settings, monkeypatch, db):
    """A fresh simulator state, both key pairs in the environment, the execute role, and a
    balance snapshot taken with the read-only key (as the scan worker would)."""
    from exchange.rules_cache import market_rules_forget
    from exchange.services import balances_refresh

    simulator.control.reset()
    cache.clear()
    market_rules_forget()
    settings.BITVAVO_API_URL = simulator.api_url
    for name, value in {**simulator.readonly_env(), **simulator.trade_env()}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ORACLE_ROLE", "execute")
    balances_refresh()
    yield Exchange(simulator)
    simulator.control.reset()


@pytest.fixture
def clean_env(monkeypatch):
    """No exchange keys and the web role, whatever the outer environment has."""
    for name in list(os.environ):
        if name.startswith("BITVAVO_") and name.endswith(("_KEY", "_SECRET")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ORACLE_ROLE", "web")


@pytest.fixture
def admin_client(client, admin_user):
    """pytest-django's admin client, signed in as after entering a TOTP code: a superuser
    reaches the console only so."""
    from tests.factories import login_verified

    login_verified(client, admin_user)
    return client
