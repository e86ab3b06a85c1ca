"""Row-level security on every user-owned table: the second layer under core.scoping (the
rule and what it admits: core/row_security.py). Foreign-key checks are not subject to row
security, so references across users still validate. A later data migration on these tables
runs inside `core.row_security.migration_system_scope`.
"""

from django.db import migrations

from core.row_security import row_security_disable, row_security_enable

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


def enable(apps, schema_editor):
    row_security_enable(schema_editor, USER_OWNED_TABLES)


def disable(apps, schema_editor):
    row_security_disable(schema_editor, USER_OWNED_TABLES)


class Migration(migrations.Migration):
    dependencies = [
        ("trading", "0006_notifications"),
        ("budget", "0002_budget_lock"),
        ("scheduler", "0001_initial"),
    ]

    operations = [migrations.RunPython(enable, disable)]
