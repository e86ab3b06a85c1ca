from django.db import migrations


def create_row(apps, schema_editor):
    # The stop must exist from the start, so that reading it can never find "no row".
    apps.get_model("trading", "EmergencyStop").objects.get_or_create(id=1)


class Migration(migrations.Migration):
    dependencies = [("trading", "0001_initial")]

    operations = [migrations.RunPython(create_row, migrations.RunPython.noop)]
