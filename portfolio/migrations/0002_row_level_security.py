"""Forced row-level security on portfolio_snapshots, the same rule as every user-owned table
(core/row_security.py): a row is visible and writable when its user_id is the
session's `oracle.user_id`, or `oracle.scope` is staff or system; with nothing set, nothing.

PostgreSQL only: SQLite (the demo) has no row-level security.
"""

from django.db import migrations

from core.row_security import row_security_disable, row_security_enable

TABLE = "portfolio_snapshots"


def enable(apps, schema_editor):
    row_security_enable(schema_editor, [TABLE])


def disable(apps, schema_editor):
    row_security_disable(schema_editor, [TABLE])


class Migration(migrations.Migration):
    dependencies = [("portfolio", "0001_initial")]

    operations = [migrations.RunPython(enable, disable)]
