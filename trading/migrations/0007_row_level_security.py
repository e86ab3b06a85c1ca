"""Row-level security on every user-owned table: the second layer under core.scoping.

Each table admits a row only when the session's scope allows it:
- `oracle.scope` is `staff` (the admin) or `system` (workers, operational reads): every row;
- otherwise only rows whose user_id equals `oracle.user_id`; unset or empty, no row (fails
  closed). The same rule guards what is read and what is written (USING and WITH CHECK).

FORCE makes the table owner obey the policies too; only superusers and BYPASSRLS roles skip
them, and the application never connects as either (see `manage.py db_roles`). Foreign-key
checks are not subject to row security, so references across users still validate.
A later data migration on these tables that runs as a non-superuser owner must first run
`SELECT set_config('oracle.scope', 'system', false)`.

PostgreSQL only: SQLite (the demo) has no row-level security.
"""

from django.db import migrations

USER_OWNED_TABLES = (
    "trading_policies",
    "trade_proposals",
    "trade_proposal_events",
    "trade_executions",
    "trade_history",
    "gpt_usage_log",
    "gpt_budget_locks",
    "scan_jobs",
    "notification_settings",
    "notification_deliveries",
)

POLICY_RULE = """
    current_setting('oracle.scope', true) IN ('staff', 'system')
    OR user_id = NULLIF(current_setting('oracle.user_id', true), '')::bigint
"""


def enable(apps, schema_editor):
    enable_on(schema_editor, USER_OWNED_TABLES)


def disable(apps, schema_editor):
    disable_on(schema_editor, USER_OWNED_TABLES)


def enable_on(schema_editor, tables) -> None:
    """The policy on `tables`; a later app's migration calls it for its own tables."""
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in tables:
        schema_editor.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        schema_editor.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        schema_editor.execute(f"DROP POLICY IF EXISTS oracle_scope ON {table}")
        schema_editor.execute(
            f"CREATE POLICY oracle_scope ON {table} USING ({POLICY_RULE}) "
            f"WITH CHECK ({POLICY_RULE})"
        )


def disable_on(schema_editor, tables) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in tables:
        schema_editor.execute(f"DROP POLICY IF EXISTS oracle_scope ON {table}")
        schema_editor.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        schema_editor.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")


class Migration(migrations.Migration):
    dependencies = [
        ("trading", "0006_notifications"),
        ("budget", "0002_budget_lock"),
        ("scheduler", "0001_initial"),
    ]

    operations = [migrations.RunPython(enable, disable)]
