"""The notification models moved from trading to their own app without touching their tables:
a user's permission on them, granted before the move, still holds after it."""

import pytest
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from tests.factories import NotificationDeliveryFactory, UserFactory

BEFORE_THE_MOVE = [("trading", "0007_row_level_security"), ("notifications", None)]


def migrate(targets) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    ContentType.objects.clear_cache()


@pytest.mark.django_db(transaction=True)
def test_permissions_and_rows_follow_the_models_to_the_notifications_app():
    delivery = NotificationDeliveryFactory()
    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    try:
        migrate(BEFORE_THE_MOVE)
        before = ContentType.objects.get(model="notificationdelivery")
        assert before.app_label == "trading"
        permission = Permission.objects.get(
            content_type=before, codename="view_notificationdelivery"
        )
        viewer = UserFactory()
        viewer.user_permissions.add(permission)
    finally:
        migrate(latest)

    after = ContentType.objects.get(model="notificationdelivery")
    assert (after.pk, after.app_label) == (before.pk, "notifications")
    viewer = type(viewer).objects.get(pk=viewer.pk)
    assert viewer.has_perm("notifications.view_notificationdelivery")
    assert delivery.__class__.objects.filter(pk=delivery.pk).exists(), "the table kept its rows"
