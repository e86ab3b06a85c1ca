import pytest
from django.db import connection


@pytest.fixture(autouse=True, scope="session")
def _require_postgresql(django_db_setup, django_db_blocker):
    # Locking, constraints and row-level rules are what the tests prove: SQLite cannot.
    with django_db_blocker.unblock():
        if connection.vendor != "postgresql":
            pytest.exit(
                "The tests need PostgreSQL: set DATABASE_URL (make test does) "
                f"— got the {connection.vendor} backend.",
                returncode=3,
            )
