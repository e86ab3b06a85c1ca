"""Row-level security on the evaluation tables, by the rule of every user-owned
table (core/row_security.py). PostgreSQL only."""

from django.db import migrations

from core.row_security import row_security_disable, row_security_enable

USER_OWNED_TABLES = ("advisor_decisions", "proposal_outcomes")


def enable(apps, schema_editor):
    row_security_enable(schema_editor, USER_OWNED_TABLES)


def disable(apps, schema_editor):
    row_security_disable(schema_editor, USER_OWNED_TABLES)


class Migration(migrations.Migration):
    dependencies = [
        ("evaluation", "0001_initial"),
        ("trading", "0007_row_level_security"),
    ]

    operations = [migrations.RunPython(enable, disable)]
