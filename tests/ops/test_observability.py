import pytest
from django.core.cache import cache

from tests.factories import TradeExecutionFactory
from trading.finish import execution_fail

pytestmark = pytest.mark.django_db


def test_healthz_reports_database_and_broker(client):
    response = client.get("/healthz")
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


def test_healthz_is_unhealthy_without_a_broker(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["broker"].startswith("error")


def test_metrics_count_executions_in_flight_and_ended(client):
    cache.clear()  # the counters of earlier tests
    TradeExecutionFactory()
    ending = TradeExecutionFactory()
    before = client.get("/metrics").content.decode()
    assert execution_fail(
        ending, from_status="CLAIMED", code="EXCHANGE_INSUFFICIENT_BALANCE", message="No EUR."
    )
    body = client.get("/metrics").content.decode()
    assert 'oracle_executions{error_code="",status="CLAIMED"} 2.0' in before
    assert 'oracle_executions{error_code="",status="CLAIMED"} 1.0' in body
    ended = (
        'oracle_executions_ended_total{error_code="EXCHANGE_INSUFFICIENT_BALANCE",status="FAILED"}'
    )
    assert f"{ended} 1.0" in body and ended not in before
    assert "oracle_submitting_oldest_age_seconds 0.0" in body
