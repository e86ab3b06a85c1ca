"""Row-level security on the evaluation tables, by the rule and code of trading 0007
(forced, the same expression in USING and WITH CHECK). PostgreSQL only."""

import importlib

from django.db import migrations

USER_OWNED_TABLES = ("advisor_decisions", "proposal_outcomes")

_row_security = importlib.import_module("trading.migrations.0007_row_level_security")


def enable(apps, schema_editor):
    _row_security.enable_on(schema_editor, USER_OWNED_TABLES)


def disable(apps, schema_editor):
    _row_security.disable_on(schema_editor, USER_OWNED_TABLES)


class Migration(migrations.Migration):
    dependencies = [
        ("evaluation", "0001_initial"),
        ("trading", "0007_row_level_security"),
    ]

    operations = [migrations.RunPython(enable, disable)]
