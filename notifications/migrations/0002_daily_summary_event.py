
from django.db import migrations, models

from core.row_security import migration_system_scope

# The events every user had by default before daily_summary existed.
EARLIER_EVENTS = {
    "proposal_pending",
    "execution_ended",
    "kill_switch",
    "emergency_stop",
    "budget_exhausted",
    "scan_lock_recovered",
}


def subscribe_default_users(apps, schema_editor):
    """Users who kept every event (the default) get the new one too; a chosen subset stays
    as chosen."""
    settings_model = apps.get_model("notifications", "NotificationSettings")
    with migration_system_scope(schema_editor):
        for row in settings_model.objects.all():
            if EARLIER_EVENTS <= set(row.events) and "daily_summary" not in row.events:
                row.events = [*row.events, "daily_summary"]
                row.save(update_fields=["events"])


class Migration(migrations.Migration):

    dependencies = [
        ('notifications', '0001_initial'),
    ]

    operations = [
        migrations.AlterField(
            model_name='notificationdelivery',
            name='event',
            field=models.CharField(choices=[('proposal_pending', 'A proposal awaits approval'), ('execution_ended', 'An execution ended (SUBMITTED or FAILED)'), ('kill_switch', "The user's kill switch was flipped"), ('emergency_stop', 'The operator emergency stop was flipped'), ('budget_exhausted', 'The LLM budget ran out'), ('scan_lock_recovered', 'A scan lock was recovered'), ('daily_summary', "The day's trades and profit (a daily heartbeat)")], max_length=32),
        ),
        migrations.RunPython(subscribe_default_users, migrations.RunPython.noop),
    ]
