"""Row-level security, the second layer: what the database itself lets each role see and write.

The suite connects as a superuser, which skips row security; these tests take the web role
(`SET ROLE`, or a real connection as that role) to see what the web process would.
"""

from __future__ import annotations

import contextlib
import importlib
import io
from decimal import Decimal

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from psycopg import sql

from budget.models import GptBudgetLock
from config.celery import app
from notifications.models import TelegramCallbackToken, TelegramLinkCode
from tests.factories import (
    AdvisorDecisionFactory,
    GptUsageLogFactory,
    NotificationDeliveryFactory,
    NotificationSettingsFactory,
    PolicyFactory,
    PortfolioSnapshotFactory,
    ProposalEventFactory,
    ProposalOutcomeFactory,
    ScanJobFactory,
    TradeHistoryFactory,
    TradeProposalFactory,
    UserFactory,
)
from tests.workers import celery_worker, database_url, wait_for
from trading.claim import execution_claim
from trading.models import (
    AllocationChange,
    LedgerCheckpoint,
    ProposalEvent,
    TradeExecution,
    TradeHistory,
    TradeProposal,
)

USER_OWNED_TABLES = (
    *importlib.import_module("trading.migrations.0007_row_level_security").USER_OWNED_TABLES,
    *importlib.import_module("evaluation.migrations.0002_row_level_security").USER_OWNED_TABLES,
    importlib.import_module("portfolio.migrations.0002_row_level_security").TABLE,
    *importlib.import_module("notifications.migrations.0003_telegram_bot").USER_OWNED_TABLES,
    *importlib.import_module("trading.migrations.0012_policy_allocation_and_account_funds").TABLES,
    importlib.import_module("trading.migrations.0017_ledger_checkpoints").TABLE,
)

# Tables of Django itself that have a user_id but hold no user data of the product: the
# authentication tables must be read before the user is known (API tokens and TOTP devices
# too); the admin log is staff-only.
DJANGO_AUTH_TABLES = {
    "authtoken_token",
    "api_tokens",
    "otp_totp_totpdevice",
    "auth_user_groups",
    "auth_user_user_permissions",
    "django_admin_log",
}


def owned_rows(user) -> TradeProposal:
    """One row of this user in every user-owned table; returns the user's proposal."""
    PolicyFactory(user=user)
    history = TradeHistoryFactory(execution__proposal__user=user)
    proposal = history.execution.proposal
    ProposalEventFactory(proposal=proposal)
    GptUsageLogFactory(user=user)
    GptBudgetLock.objects.create(user=user)
    ScanJobFactory(user=user)
    NotificationSettingsFactory(user=user)
    NotificationDeliveryFactory(user=user)
    AdvisorDecisionFactory(user=user, proposal=proposal, decision="propose")
    ProposalOutcomeFactory(proposal=proposal)
    PortfolioSnapshotFactory(user=user)
    TelegramLinkCode.objects.create(
        user=user, code_hash=f"{user.pk:064d}", expires_at=timezone.now()
    )
    TelegramCallbackToken.objects.create(
        user=user,
        token_hash=f"{user.pk:064d}",
        proposal_id=proposal.pk,
        action="approve",
        chat_id=1,
    )
    AllocationChange.objects.create(user=user, before_eur=0, after_eur=100)
    LedgerCheckpoint.objects.create(
        user=user,
        through_executed_at=history.executed_at,
        through_history_id=history.pk,
        fills=1,
        last_history_id=history.pk,
        taken_at=timezone.now(),
    )
    return proposal


@pytest.fixture
def alice_and_bob(db):
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    return alice, owned_rows(alice), bob, owned_rows(bob)


def _scope_set(cursor, scope: str, user_id: int | None) -> None:
    cursor.execute(
        "SELECT set_config('oracle.scope', %s, false), set_config('oracle.user_id', %s, false)",
        [scope, "" if user_id is None else str(user_id)],
    )


@contextlib.contextmanager
def as_web_role(*, scope: str = "", user_id: int | None = None):
    """This test's connection acts as the web role with the given scope, then as before."""
    with connection.cursor() as cursor:
        cursor.execute("SET ROLE oracle_web")
        _scope_set(cursor, scope, user_id)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
            _scope_set(cursor, "", None)


def table_user_ids(table: str) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(sql.SQL("SELECT user_id FROM {}").format(sql.Identifier(table)))
        return sorted({row[0] for row in cursor.fetchall()})


def refused(statement: str, params: list) -> bool:
    """True when the database refuses the statement (and the test transaction survives)."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement, params)
    except DatabaseError as error:
        assert "row-level security" in str(error), error
        return True
    return False


@pytest.mark.django_db
def test_the_web_role_is_neither_superuser_nor_owner_and_every_user_owned_table_forces_rls(
    database_roles,
):
    with connection.cursor() as cursor:
        for role in database_roles.values():
            cursor.execute(
                "SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = %s",
                [role],
            )
            assert cursor.fetchone() == (False, False, True), role
        cursor.execute(
            "SELECT c.relname, pg_get_userbyid(c.relowner), c.relrowsecurity, "
            "c.relforcerowsecurity FROM pg_class c WHERE c.relname = ANY(%s)",
            [list(USER_OWNED_TABLES)],
        )
        tables = {name: rest for name, *rest in cursor.fetchall()}
        # Every table of the product with a user_id is in the list the migration protects.
        cursor.execute(
            "SELECT table_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND column_name = 'user_id'"
        )
        with_user_id = {row[0] for row in cursor.fetchall()} - DJANGO_AUTH_TABLES
    assert set(tables) == set(USER_OWNED_TABLES) == with_user_id
    for table, (owner, row_security, forced) in tables.items():
        assert owner not in database_roles.values(), table
        assert row_security and forced, table


@pytest.mark.django_db
def test_db_roles_refuses_a_role_that_would_skip_row_security(database_roles):
    with connection.cursor() as cursor:
        # Created inside the test's transaction, so it disappears with the rollback.
        cursor.execute("CREATE ROLE oracle_probe_bypass LOGIN BYPASSRLS")
    with pytest.raises(CommandError, match="bypasses row-level security"):
        call_command("db_roles", web_role="oracle_probe_bypass", stdout=io.StringIO())


@pytest.mark.django_db
def test_a_query_that_forgets_its_filter_sees_only_the_users_rows(database_roles, alice_and_bob):
    alice, alice_proposal, bob, bob_proposal = alice_and_bob
    assert table_user_ids("trade_proposals") == sorted([alice.pk, bob.pk])  # as superuser
    with as_web_role(scope="user", user_id=alice.pk):
        # Outside a request the Django guard is off: only the database stands in the way.
        assert list(TradeProposal.objects.all()) == [alice_proposal]
        assert list(ProposalEvent.objects.values_list("user_id", flat=True)) == [alice.pk]
        for table in USER_OWNED_TABLES:
            assert table_user_ids(table) == [alice.pk], table


@pytest.mark.django_db
def test_the_web_role_cannot_write_another_users_rows(database_roles, alice_and_bob):
    alice, alice_proposal, bob, bob_proposal = alice_and_bob
    with as_web_role(scope="user", user_id=alice.pk):
        # Insert a row for bob: refused by the policy's WITH CHECK.
        assert refused(
            "INSERT INTO trade_proposal_events (proposal_id, user_id, kind, data, created_at) "
            "VALUES (%s, %s, 'created', '{}', now())",
            [bob_proposal.pk, bob.pk],
        )
        # Move alice's own row to bob: refused as well.
        assert refused(
            "UPDATE trade_proposals SET user_id = %s WHERE id = %s", [bob.pk, alice_proposal.pk]
        )
        # Bob's rows are invisible, so an UPDATE or DELETE of them changes nothing.
        assert TradeProposal.objects.filter(pk=bob_proposal.pk).update(amount_eur=1) == 0
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM scan_jobs WHERE user_id = %s", [bob.pk])
            assert cursor.rowcount == 0
        # Alice's own rows she may write.
        assert TradeProposal.objects.filter(pk=alice_proposal.pk).update(amount_eur=30) == 1
    bob_proposal.refresh_from_db()
    assert bob_proposal.amount_eur == Decimal("25.00")
    assert table_user_ids("scan_jobs") == sorted([alice.pk, bob.pk])


@pytest.mark.django_db
def test_with_no_scope_set_nothing_is_visible_or_writable(database_roles, alice_and_bob):
    alice, alice_proposal, _, _ = alice_and_bob
    with as_web_role():
        for table in USER_OWNED_TABLES:
            assert table_user_ids(table) == [], table
        assert TradeProposal.objects.count() == 0
        assert refused(
            "INSERT INTO trade_proposal_events (proposal_id, user_id, kind, data, created_at) "
            "VALUES (%s, %s, 'created', '{}', now())",
            [alice_proposal.pk, alice.pk],
        )


@pytest.mark.django_db
def test_the_staff_scope_sees_every_users_rows(database_roles, alice_and_bob):
    alice, _, bob, _ = alice_and_bob
    with as_web_role(scope="staff", user_id=alice.pk):
        for table in USER_OWNED_TABLES:
            assert table_user_ids(table) == sorted([alice.pk, bob.pk]), table


@pytest.mark.django_db(transaction=True)
def test_real_connections_web_fails_closed_worker_sees_all_and_neither_can_lift_rls(
    database_roles,
):
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    owned_rows(alice)
    owned_rows(bob)
    with psycopg.connect(database_url(database_roles["web"]), autocommit=True) as web:
        assert web.execute("SELECT current_user").fetchone() == ("oracle_web",)
        assert web.execute("SELECT count(*) FROM trade_executions").fetchone() == (0,)
        _scope_set(web.cursor(), "user", alice.pk)
        rows = web.execute("SELECT DISTINCT user_id FROM trade_executions").fetchall()
        assert rows == [(alice.pk,)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            web.execute("ALTER TABLE trade_executions NO FORCE ROW LEVEL SECURITY")
    with psycopg.connect(database_url(database_roles["worker"]), autocommit=True) as worker:
        # The worker role's sessions start in the system scope (a role setting).
        assert worker.execute("SELECT current_setting('oracle.scope')").fetchone() == ("system",)
        rows = worker.execute("SELECT user_id FROM trade_proposals ORDER BY user_id").fetchall()
        assert rows == [(alice.pk,), (bob.pk,)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            worker.execute("ALTER TABLE trade_proposals DISABLE ROW LEVEL SECURITY")


@pytest.mark.django_db(transaction=True)
def test_an_execute_worker_connected_as_the_worker_role_does_its_work(database_roles, exchange):
    policy = PolicyFactory()
    proposal = TradeProposalFactory(user=policy.user, approved=True)
    claim = execution_claim(proposal=proposal, actor_id=None).execution  # as the web claims
    TradeProposalFactory()  # another user's row the worker may see too
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("execute")
    env = {
        "DATABASE_URL": database_url(database_roles["worker"]),
        "ORACLE_ROLE": "execute",
        "BITVAVO_API_URL": exchange.api_url,
        "BITVAVO_READONLY_KEY": "",
        "BITVAVO_READONLY_SECRET": "",
        **exchange.server.trade_env(),
    }
    with celery_worker(queue="execute", env=env) as worker:
        app.send_task("trading.tasks.execute_claim", args=[claim.pk], queue="execute")
        wait_for(lambda: worker.log().count("succeeded in") >= 1, what="the execute task")
    execution = TradeExecution.objects.get(proposal=proposal)
    assert execution.status == TradeExecution.Status.SUBMITTED, worker.log()
    assert TradeHistory.objects.filter(execution=execution).count() == 1
    assert len(exchange.orders()) == 1
