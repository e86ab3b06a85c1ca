"""`manage.py exchange_check` and the worker start-up key checks."""

import re

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from exchange.errors import ExchangeConfigurationError
from exchange.keycheck import (
    assert_no_trade_key_in_environment,
    assert_scan_key_cannot_trade,
    assert_trade_key_present,
)
from exchange.transport import clock_offset_known

pytestmark = pytest.mark.django_db


@pytest.fixture
def swapped(exchange, monkeypatch):
    readonly, trade = exchange.server.readonly_pair, exchange.server.trade_pair
    monkeypatch.setenv("BITVAVO_READONLY_KEY", trade[0])
    monkeypatch.setenv("BITVAVO_READONLY_SECRET", trade[1])
    monkeypatch.setenv("BITVAVO_TRADE_KEY", readonly[0])
    monkeypatch.setenv("BITVAVO_TRADE_SECRET", readonly[1])
    return exchange


def test_exchange_check_passes_with_the_right_keys(exchange, capsys):
    call_command("exchange_check")
    out = capsys.readouterr().out
    assert "OK       connectivity: GET /time answered" in out
    assert "OK       clock drift: +" in out or "OK       clock drift: -" in out
    assert "OK       read-only key: may read balances" in out
    assert "OK       read-only key: may not trade" in out
    assert "OK       trade key: set, may trade" in out
    assert "PROBLEM" not in out and out.endswith("all checks passed\n")


def test_exchange_check_fails_clearly_with_swapped_keys(swapped, capsys):
    with pytest.raises(CommandError) as caught:
        call_command("exchange_check")
    out = capsys.readouterr().out
    assert "PROBLEM  read-only key: cannot read balances (EXCHANGE_PERMISSION_DENIED)" in out
    assert "PROBLEM  read-only key: READONLY_KEY_CAN_TRADE: The read-only key MAY TRADE" in out
    assert "PROBLEM  trade key: TRADE_KEY_CANNOT_TRADE" in out
    assert "all checks passed" not in out
    assert str(caught.value).startswith("3 problem(s)")


def test_the_command_exits_non_zero_on_a_problem(swapped, manage):
    failed = manage("exchange_check", "--role", "scan")
    assert failed.returncode == 1
    assert "PROBLEM  read-only key: READONLY_KEY_CAN_TRADE" in failed.stdout
    assert "problem(s)" in failed.stderr


def test_the_command_exits_zero_when_all_is_well(exchange, manage):
    passed = manage("exchange_check")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert passed.stdout.endswith("all checks passed\n")


def test_an_unreachable_exchange_is_a_problem(exchange, settings, capsys):
    settings.BITVAVO_API_URL = "http://127.0.0.1:9/v2"
    with pytest.raises(CommandError):
        call_command("exchange_check", role="scan")
    assert "PROBLEM  connectivity: EXCHANGE_UNREACHABLE" in capsys.readouterr().out


@pytest.mark.parametrize("skew_ms", [15_000, -15_000])
def test_a_clock_drift_beyond_a_second_is_a_warning_not_a_problem(exchange, capsys, skew_ms):
    exchange.control.set_clock_skew(skew_ms)
    call_command("exchange_check")  # compensated in every signed request: no problem
    out = capsys.readouterr().out
    # The drift is measured at the round trip's midpoint: ±15000 ms give or take a few.
    drift = re.search(r"WARNING  clock drift: ([+-]\d+) ms, compensated", out)
    assert drift and abs(int(drift.group(1)) - skew_ms) <= 200, out
    assert "PROBLEM" not in out
    assert abs(clock_offset_known() - skew_ms) <= 200, "kept for /metrics"


def test_a_clock_that_cannot_be_read_within_the_window_is_a_problem(exchange, capsys, settings):
    settings.BITVAVO_ACCESS_WINDOW_MS = 400
    exchange.control.inject("latency", seconds=0.5, method="GET", path="/time", times=2)
    with pytest.raises(CommandError):
        call_command("exchange_check")
    assert "too slow for a 400 ms window" in capsys.readouterr().out


def test_outside_the_executor_the_trade_key_is_not_checked_but_reported(exchange, monkeypatch):
    monkeypatch.setenv("ORACLE_ROLE", "web")
    with pytest.raises(CommandError, match="TRADE_CLIENT_WRONG_ROLE"):
        call_command("exchange_check")


def test_the_scan_worker_check(exchange, monkeypatch):
    with pytest.raises(ExchangeConfigurationError) as caught:
        assert_no_trade_key_in_environment()  # the fixture gave this process both keys
    assert caught.value.code == "TRADE_KEY_OUTSIDE_EXECUTOR"
    monkeypatch.delenv("BITVAVO_TRADE_KEY")
    monkeypatch.delenv("BITVAVO_TRADE_SECRET")
    assert_no_trade_key_in_environment()
    assert_scan_key_cannot_trade()
    monkeypatch.setenv("BITVAVO_READONLY_KEY", exchange.server.trade_pair[0])
    monkeypatch.setenv("BITVAVO_READONLY_SECRET", exchange.server.trade_pair[1])
    with pytest.raises(ExchangeConfigurationError) as caught:
        assert_scan_key_cannot_trade()
    assert caught.value.code == "READONLY_KEY_CAN_TRADE"
    monkeypatch.delenv("BITVAVO_READONLY_KEY")
    with pytest.raises(ExchangeConfigurationError) as caught:
        assert_scan_key_cannot_trade()
    assert caught.value.code == "READONLY_KEY_MISSING"


def test_the_execute_worker_check(exchange, monkeypatch):
    assert_trade_key_present()
    monkeypatch.setenv("BITVAVO_TRADE_KEY", exchange.server.readonly_pair[0])
    monkeypatch.setenv("BITVAVO_TRADE_SECRET", exchange.server.readonly_pair[1])
    with pytest.raises(ExchangeConfigurationError) as caught:
        assert_trade_key_present()
    assert caught.value.code == "TRADE_KEY_CANNOT_TRADE"
    monkeypatch.setenv("BITVAVO_TRADE_KEY", "")
    with pytest.raises(ExchangeConfigurationError) as caught:
        assert_trade_key_present()
    assert caught.value.code == "TRADE_KEY_MISSING"
    assert exchange.orders() == [], "the probes never place an order"
