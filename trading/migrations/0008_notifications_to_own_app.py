"""The notification models now belong to the notifications app (its 0001_initial): only
Django's state changes here; the tables and their rows stay."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("trading", "0007_row_level_security"),
        ("notifications", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="NotificationDelivery"),
                migrations.DeleteModel(name="NotificationSettings"),
            ],
            database_operations=[],
        ),
    ]
