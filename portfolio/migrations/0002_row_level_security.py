"""Forced row-level security on portfolio_snapshots, the same rule as every user-owned table
(trading 0007_row_level_security): a row is visible and writable when its user_id is the
session's `oracle.user_id`, or `oracle.scope` is staff or system; with nothing set, nothing.

PostgreSQL only: SQLite (the demo) has no row-level security.
"""

from django.db import migrations

TABLE = "portfolio_snapshots"
POLICY_RULE = """
    current_setting('oracle.scope', true) IN ('staff', 'system')
    OR user_id = NULLIF(current_setting('oracle.user_id', true), '')::bigint
"""


def enable(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"ALTER TABLE {TABLE} ENABLE ROW LEVEL SECURITY")
    schema_editor.execute(f"ALTER TABLE {TABLE} FORCE ROW LEVEL SECURITY")
    schema_editor.execute(f"DROP POLICY IF EXISTS oracle_scope ON {TABLE}")
    schema_editor.execute(
        f"CREATE POLICY oracle_scope ON {TABLE} USING ({POLICY_RULE}) WITH CHECK ({POLICY_RULE})"
    )


def disable(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP POLICY IF EXISTS oracle_scope ON {TABLE}")
    schema_editor.execute(f"ALTER TABLE {TABLE} NO FORCE ROW LEVEL SECURITY")
    schema_editor.execute(f"ALTER TABLE {TABLE} DISABLE ROW LEVEL SECURITY")


class Migration(migrations.Migration):
    dependencies = [("portfolio", "0001_initial")]

    operations = [migrations.RunPython(enable, disable)]
