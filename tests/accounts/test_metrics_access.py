"""/metrics answers only the bearer token of METRICS_BEARER_TOKEN (closed without one when not
DEBUG); /healthz stays open and says nothing sensitive."""

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_metrics_without_or_with_a_wrong_token_is_refused(settings):
    settings.METRICS_BEARER_TOKEN = "s3cret-scrape"
    for header in ({}, {"HTTP_AUTHORIZATION": "Bearer wrong"}, {"HTTP_AUTHORIZATION": "s3cret"}):
        response = Client(**header).get("/metrics")
        assert response.status_code == 401
        assert response.json()["code"] == "METRICS_TOKEN_REQUIRED"
        assert b"oracle_" not in response.content
    ok = Client(HTTP_AUTHORIZATION="Bearer s3cret-scrape").get("/metrics")
    assert ok.status_code == 200 and b"oracle_executions" in ok.content


def test_metrics_with_no_token_set_is_closed_in_production(settings):
    settings.METRICS_BEARER_TOKEN = ""
    settings.DEBUG = False
    assert Client().get("/metrics").status_code == 401


def test_healthz_is_open_and_tells_only_ok_or_the_error_kind():
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert set(response.json()) == {"status", "database", "broker"}
