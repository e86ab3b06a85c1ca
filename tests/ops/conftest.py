import pytest
from django.test import Client

# /metrics answers only the scraper holding METRICS_BEARER_TOKEN (closed without DEBUG).
SCRAPE_TOKEN = "scrape-token-for-tests"


@pytest.fixture
def client(settings):
    """The test client, as Prometheus scrapes: with the metrics bearer token."""
    settings.METRICS_BEARER_TOKEN = SCRAPE_TOKEN
    return Client(HTTP_AUTHORIZATION=f"Bearer {SCRAPE_TOKEN}")
