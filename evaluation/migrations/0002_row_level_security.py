"""Row-level security on the evaluation tables, by the rule of trading 0007 (forced, the
same expression in USING and WITH CHECK). PostgreSQL only."""

import importlib

from django.db import migrations

USER_OWNED_TABLES = ("advisor_decisions", "proposal_outcomes")

POLICY_RULE = importlib.import_module("trading.migrations.0007_row_level_security").POLICY_RULE


def enable(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in USER_OWNED_TABLES:
        schema_editor.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        schema_editor.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        schema_editor.execute(
            f"CREATE POLICY oracle_scope ON {table} USING ({POLICY_RULE}) "
            f"WITH CHECK ({POLICY_RULE})"
        )


def disable(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in USER_OWNED_TABLES:
        schema_editor.execute(f"DROP POLICY IF EXISTS oracle_scope ON {table}")
        schema_editor.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        schema_editor.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")


class Migration(migrations.Migration):
    dependencies = [
        ("evaluation", "0001_initial"),
        ("trading", "0007_row_level_security"),
    ]

    operations = [migrations.RunPython(enable, disable)]
