"""notifications 0002: users who kept every event get daily_summary too; a chosen subset stays."""

import importlib

import pytest
from django.apps import apps
from django.db import connection

from tests.factories import NotificationSettingsFactory

pytestmark = pytest.mark.django_db

migration = importlib.import_module("notifications.migrations.0002_daily_summary_event")


def test_users_with_every_earlier_event_are_subscribed_to_the_summary():
    every = NotificationSettingsFactory(events=sorted(migration.EARLIER_EVENTS))
    chosen = NotificationSettingsFactory(events=["proposal_pending"])

    with connection.schema_editor() as editor:
        migration.subscribe_default_users(apps, editor)

    every.refresh_from_db()
    chosen.refresh_from_db()
    assert every.events == [*sorted(migration.EARLIER_EVENTS), "daily_summary"]
    assert chosen.events == ["proposal_pending"]
