"""The notification models move here from trading; their tables stay as they are.

Only Django's state moves (SeparateDatabaseAndState): `notification_settings` and
`notification_deliveries` were created by trading 0006 and keep their rows, constraints and
the row-level security of trading 0007; trading 0008 drops them from trading's state. The
content types follow to the new app label, so the permissions granted on them (and admin
history) stay with the models.
"""

import django.db.models.deletion
import notifications.models
from django.conf import settings
from django.db import migrations, models


CONTENT_TYPES = ("notificationsettings", "notificationdelivery")


def content_types_to(app_label: str, other: str):
    def move(apps, schema_editor):
        content_types = apps.get_model("contenttypes", "ContentType").objects
        for model in CONTENT_TYPES:
            # One created under the new label meanwhile (by post_migrate) is left as it is.
            if not content_types.filter(app_label=app_label, model=model).exists():
                content_types.filter(app_label=other, model=model).update(app_label=app_label)

    return move


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("contenttypes", "0002_remove_content_type_name"),
        ("trading", "0007_row_level_security"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='NotificationDelivery',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('event', models.CharField(choices=[('proposal_pending', 'A proposal awaits approval'), ('execution_ended', 'An execution ended (SUBMITTED or FAILED)'), ('kill_switch', "The user's kill switch was flipped"), ('emergency_stop', 'The operator emergency stop was flipped'), ('budget_exhausted', 'The LLM budget ran out'), ('scan_lock_recovered', 'A scan lock was recovered')], max_length=32)),
                        ('channel', models.CharField(choices=[('webhook', 'Webhook'), ('email', 'Email')], max_length=8)),
                        ('destination', models.CharField(max_length=500)),
                        ('dedupe_key', models.CharField(max_length=200)),
                        ('subject', models.CharField(max_length=200)),
                        ('payload', models.JSONField()),
                        ('status', models.CharField(choices=[('PENDING', 'Pending'), ('DELIVERED', 'Delivered'), ('FAILED', 'Failed')], default='PENDING', max_length=10)),
                        ('attempt_count', models.PositiveSmallIntegerField(default=0)),
                        ('attempts', models.JSONField(blank=True, default=list)),
                        ('last_error', models.TextField(blank=True)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('finished_at', models.DateTimeField(blank=True, null=True)),
                        ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='notification_deliveries', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'verbose_name_plural': 'notification deliveries',
                        'db_table': 'notification_deliveries',
                        'indexes': [models.Index(fields=['user', '-created_at'], name='notification_deliveries_user')],
                        'constraints': [models.UniqueConstraint(fields=('user', 'channel', 'dedupe_key'), name='notification_deliveries_once', violation_error_code='NOTIFICATION_EXISTS'), models.CheckConstraint(condition=models.Q(('status__in', ['PENDING', 'DELIVERED', 'FAILED'])), name='notification_deliveries_status_valid', violation_error_code='NOTIFICATION_STATUS_INVALID'), models.CheckConstraint(condition=models.Q(('status', 'PENDING'), ('finished_at__isnull', False), _connector='OR'), name='notification_deliveries_finished_time_recorded', violation_error_code='NOTIFICATION_FINISH_TIME_MISSING')],
                    },
                ),
                migrations.CreateModel(
                    name='NotificationSettings',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('webhook_url', models.URLField(blank=True, max_length=500)),
                        ('webhook_secret', models.CharField(max_length=64)),
                        ('email', models.EmailField(blank=True, max_length=254)),
                        ('events', models.JSONField(blank=True, default=notifications.models.all_notification_events)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('updated_at', models.DateTimeField(auto_now=True)),
                        ('user', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='notification_settings', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'verbose_name_plural': 'notification settings',
                        'db_table': 'notification_settings',
                        'constraints': [models.CheckConstraint(condition=models.Q(('webhook_url', ''), ('webhook_url__startswith', 'http://'), ('webhook_url__startswith', 'https://'), _connector='OR'), name='notification_settings_webhook_http', violation_error_code='WEBHOOK_URL_NOT_HTTP', violation_error_message='The webhook URL must start with http(s)://.')],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(
            content_types_to("notifications", "trading"),
            content_types_to("trading", "notifications"),
        ),
    ]
