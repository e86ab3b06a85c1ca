import pytest

from tests.factories import TradeExecutionFactory

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


def test_metrics_count_executions_by_status(client):
    TradeExecutionFactory()
    TradeExecutionFactory(status="FAILED", error_code="EXCHANGE_INSUFFICIENT_BALANCE")
    body = client.get("/metrics").content.decode()
    assert 'oracle_executions{error_code="",status="CLAIMED"} 1.0' in body
    assert (
        'oracle_executions{error_code="EXCHANGE_INSUFFICIENT_BALANCE",status="FAILED"} 1.0' in body
    )
    assert "oracle_submitting_oldest_age_seconds 0.0" in body
