import fcntl
import io
import os
import tempfile
from urllib.parse import urlsplit, urlunsplit

import environ
import pytest
from django.conf import settings
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection

from exchange.simulator.server import SimulatorServer

# Parallel runs (`pytest -n 2`, as `make test` does): pytest-django gives each xdist worker
# its own test database (suffix _gw0, _gw1, …); the simulator already listens on a free port
# per process. The Redis dbs are shared state too (cache, broker queues, exchange bans): each
# worker takes its own, REDIS_DB_STRIDE above the given ones per worker index, before any test
# (or child process, which inherits this environment) touches them.
REDIS_DB_STRIDE = 4


def _worker_redis_url(url: str, index: int, workers: int) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or index == 0:
        return url
    base = int(parts.path.strip("/") or 0)
    db = base + REDIS_DB_STRIDE * index
    if base >= REDIS_DB_STRIDE or base + REDIS_DB_STRIDE * (workers - 1) > 15:
        raise pytest.UsageError(
            f"{url}: with {workers} test workers, use Redis dbs below {REDIS_DB_STRIDE} "
            f"(worker i takes db + {REDIS_DB_STRIDE}·i, at most 15)."
        )
    return urlunsplit(parts._replace(path=f"/{db}"))


def _own_redis_dbs_per_xdist_worker() -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return
    index, workers = int(worker[2:]), int(os.environ["PYTEST_XDIST_WORKER_COUNT"])
    if "CACHE_URL" in os.environ:
        os.environ["CACHE_URL"] = _worker_redis_url(os.environ["CACHE_URL"], index, workers)
        # Settings were read before this module: they take the same values (the cache
        # connection is opened lazily, at the first use).
        settings.CACHES["default"] = environ.Env.cache_url_config(os.environ["CACHE_URL"])
    if "CELERY_BROKER_URL" in os.environ:
        url = _worker_redis_url(os.environ["CELERY_BROKER_URL"], index, workers)
        os.environ["CELERY_BROKER_URL"] = settings.CELERY_BROKER_URL = url
        from config.celery import app

        app.conf.broker_url = url


_own_redis_dbs_per_xdist_worker()


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
    if connection.vendor != "postgresql" or not _test_database_created():
        return  # SQLite's file is removed, not dropped; or no test needed a database
    from exchange.call_log import call_log_connection_forget

    call_log_connection_forget()  # this process's own: closed, not cut
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        # Each cut waits (up to 5 s) for the backend to be gone: the drop comes right after.
        cursor.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


# The database as configured, before pytest-django points the connection at its test copy.
_CONFIGURED_DATABASE = settings.DATABASES["default"]["NAME"]


def _test_database_created() -> bool:
    # pytest-django creates the test database only if a selected test uses one.
    return connection.settings_dict["NAME"] != _CONFIGURED_DATABASE


@pytest.fixture(autouse=True, scope="session")
def _commits_do_not_wait_for_the_disk(django_db_setup, django_db_blocker):
    """The test database is thrown away at the end: its commits (each test's flush, every
    child process's writes) need not wait for the WAL to reach the disk. Isolation, locks and
    visibility are unchanged; only durability across a server crash is given up."""
    if connection.vendor != "postgresql" or not _test_database_created():
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        name = connection.ops.quote_name(connection.settings_dict["NAME"])
        cursor.execute(f"ALTER DATABASE {name} SET synchronous_commit = off")
        cursor.execute("SET synchronous_commit = off")


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
    # The roles are the cluster's, not the database's: parallel test workers take turns, as
    # two concurrent ALTER ROLE of one role fail ("tuple concurrently updated").
    lock_path = os.path.join(tempfile.gettempdir(), "oracle-test-db-roles.lock")
    with open(lock_path, "w") as lock, django_db_blocker.unblock():
        fcntl.flock(lock, fcntl.LOCK_EX)
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
    from exchange.call_log import call_log_connection
    from exchange.models import ExchangeCall
    from exchange.rules_cache import market_rules_forget
    from exchange.services import balances_refresh
    from exchange.simulator.state import DEFAULT_BALANCES
    from trading.models import AccountFunds

    simulator.control.reset()
    cache.clear()
    market_rules_forget()
    settings.BITVAVO_API_URL = simulator.api_url
    for name, value in {**simulator.readonly_env(), **simulator.trade_env()}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ORACLE_ROLE", "execute")
    balances_refresh()
    # The simulator's starting balances are what was paid into the account: the parts add up.
    for asset, amount in DEFAULT_BALANCES.items():
        AccountFunds.objects.update_or_create(asset=asset, defaults={"amount": amount})
    yield Exchange(simulator)
    simulator.control.reset()
    # Order calls are logged on a connection of their own, committed outside the test's
    # transaction: gone with it too.
    with call_log_connection() as alias:
        ExchangeCall.objects.using(alias).all().delete()


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
