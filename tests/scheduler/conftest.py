import json

import pytest
from django.core.cache import cache

from tests.scheduler.llm_server import LlmTestServer, Reply


@pytest.fixture
def market_data(simulator, settings, monkeypatch):
    """The simulator as the scan worker sees it: the read-only key only, the scan role."""
    simulator.control.reset()
    cache.clear()  # no rate-limit state or clock offset left from another test
    settings.BITVAVO_API_URL = simulator.api_url
    for name, value in simulator.readonly_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("BITVAVO_TRADE_KEY", raising=False)
    monkeypatch.delenv("BITVAVO_TRADE_SECRET", raising=False)
    monkeypatch.setenv("ORACLE_ROLE", "scan")
    return simulator


@pytest.fixture
def offline(monkeypatch):
    """No OPENAI_API_KEY: scans use the offline advisor."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.fixture(scope="session")
def _llm_server():
    server = LlmTestServer().start()
    yield server
    server.stop()


@pytest.fixture
def llm(_llm_server, settings, monkeypatch):
    """The LLM path against the local test server (calls counted, replies scripted)."""
    _llm_server.reset()
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    settings.OPENAI_BASE_URL = _llm_server.base_url
    settings.OPENAI_MODEL = "test-model"
    settings.OPENAI_TIMEOUT = 5.0
    return _llm_server


def proposal_reply(**changes) -> Reply:
    """A valid structured answer proposing a buy, with any field changed."""
    fields = {
        "decision": "propose",
        "market": "BTC-EUR",
        "side": "buy",
        "amount_eur": "25.00",
        "confidence": 75,
        "rationale": "Steady rise over 24 hours on low hourly volatility.",
        **changes,
    }
    return Reply(content=json.dumps(fields))
