"""The policy's bounds (the API's former input limits) become validators on the model's
fields, so the API, the admin form and the service share them. Validators live in Django's
state only: no SQL runs."""
import django.core.validators
from decimal import Decimal
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('trading', '0008_notifications_to_own_app'),
    ]

    operations = [
        migrations.AlterField(
            model_name='policy',
            name='anti_flip_minutes',
            field=models.PositiveIntegerField(default=240, validators=[django.core.validators.MaxValueValidator(525600)]),
        ),
        migrations.AlterField(
            model_name='policy',
            name='cooldown_minutes',
            field=models.PositiveIntegerField(default=60, validators=[django.core.validators.MaxValueValidator(525600)]),
        ),
        migrations.AlterField(
            model_name='policy',
            name='gpt_daily_limit',
            field=models.PositiveIntegerField(default=48, validators=[django.core.validators.MaxValueValidator(100000)]),
        ),
        migrations.AlterField(
            model_name='policy',
            name='gpt_hourly_limit',
            field=models.PositiveIntegerField(default=6, validators=[django.core.validators.MaxValueValidator(10000)]),
        ),
        migrations.AlterField(
            model_name='policy',
            name='max_daily_trades',
            field=models.PositiveIntegerField(default=5, validators=[django.core.validators.MaxValueValidator(10000)]),
        ),
        migrations.AlterField(
            model_name='policy',
            name='max_order_eur',
            field=models.DecimalField(decimal_places=2, default=Decimal('100'), max_digits=18, validators=[django.core.validators.MinValueValidator(Decimal('0'))]),
        ),
        migrations.AlterField(
            model_name='policy',
            name='max_trades_per_hour',
            field=models.PositiveIntegerField(default=2, validators=[django.core.validators.MaxValueValidator(10000)]),
        ),
        migrations.AlterField(
            model_name='policy',
            name='min_confidence',
            field=models.PositiveSmallIntegerField(default=50, validators=[django.core.validators.MaxValueValidator(100)]),
        ),
        migrations.AlterField(
            model_name='policy',
            name='min_order_eur',
            field=models.DecimalField(decimal_places=2, default=Decimal('10'), max_digits=18, validators=[django.core.validators.MinValueValidator(Decimal('0'))]),
        ),
        migrations.AlterField(
            model_name='policy',
            name='proposal_ttl_minutes',
            field=models.PositiveIntegerField(default=30, validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(10080)]),
        ),
        migrations.AlterField(
            model_name='policy',
            name='scan_interval_minutes',
            field=models.PositiveIntegerField(default=15, validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(10080)]),
        ),
    ]
