"""The simulator itself: safe under concurrent orders, deterministic prices, its checks,
and its command."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from decimal import Decimal

import pytest
import requests
from django.db import connection

from exchange.errors import ExchangeRejected
from exchange.simulator.server import DEMO_READONLY, SimulatorServer
from exchange.transport import now_ms, sign
from tests.threads import run_in_parallel
from tests.workers import wait_for

from .conftest import ROOT

pytestmark = pytest.mark.django_db


def signed_get(api_url, pair, path, *, timestamp=None, window="10000", body_for_signature=""):
    timestamp = timestamp or now_ms()
    return requests.get(
        f"{api_url}{path}",
        headers={
            "Bitvavo-Access-Key": pair[0],
            "Bitvavo-Access-Timestamp": str(timestamp),
            "Bitvavo-Access-Window": window,
            "Bitvavo-Access-Signature": sign(
                secret=pair[1],
                timestamp=timestamp,
                method="GET",
                path=f"/v2{path}",
                body=body_for_signature,
            ),
        },
        timeout=10,
    )


@pytest.mark.django_db(transaction=True)  # each thread writes the call log on its own connection
def test_concurrent_orders_are_all_filled_and_booked_exactly(trade_client, exchange):
    def buy():
        return type(trade_client)().place_market_order(
            market="ETH-EUR",
            side="buy",
            client_order_id=uuid.uuid4(),
            amount_quote=Decimal("20"),
        )

    results = run_in_parallel(buy, [()] * 25)

    assert [r for r in results if isinstance(r, Exception)] == []
    orders = exchange.orders()
    assert len(orders) == 25 and len({o["orderId"] for o in orders}) == 25
    balances = exchange.control.state()["balances"]
    assert Decimal(balances["EUR"]["available"]) == Decimal("10000") - 25 * Decimal("20")
    bought = sum(Decimal(o["filledAmount"]) for o in orders)
    assert Decimal(balances["ETH"]["available"]) == Decimal("5") + bought


@pytest.mark.django_db(transaction=True)
def test_an_order_beyond_the_balance_is_refused_under_concurrency(trade_client, exchange):
    exchange.control.set_balance("EUR", "100")

    def buy():
        try:
            type(trade_client)().place_market_order(
                market="BTC-EUR",
                side="buy",
                client_order_id=uuid.uuid4(),
                amount_quote=Decimal("30"),
            )
            return "filled"
        except ExchangeRejected as error:
            return error.code

    results = run_in_parallel(buy, [()] * 10)

    assert sorted(results) == ["EXCHANGE_INSUFFICIENT_BALANCE"] * 7 + ["filled"] * 3
    assert Decimal(exchange.control.state()["balances"]["EUR"]["available"]) == Decimal("10")


@pytest.mark.django_db(transaction=True)
def test_a_thread_that_ends_leaves_no_call_log_connection_open(trade_client, exchange):
    def open_connections() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            )
            return cursor.fetchone()[0]

    before = open_connections()

    def buy():  # never closes anything itself
        type(trade_client)().place_market_order(
            market="BTC-EUR", side="buy", client_order_id=uuid.uuid4(), amount_quote=Decimal("12")
        )

    threads = [threading.Thread(target=buy) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(exchange.orders()) == 10
    wait_for(
        lambda: open_connections() <= before, timeout=10, what="the threads' connections closed"
    )


def test_prices_are_a_seeded_walk():
    servers = [SimulatorServer(seed=seed).start() for seed in (7, 7, 8)]
    try:
        end = now_ms() - 3_600_000
        path = f"/BTC-EUR/candles?interval=5m&limit=50&end={end}"
        first, same, other = (requests.get(s.api_url + path, timeout=10).json() for s in servers)
    finally:
        for server in servers:
            server.stop()
    assert first == same and first != other
    assert len({row[4] for row in first}) > 10, "the price moves"
    assert all(Decimal(row[4]) % 1 == 0 for row in first), "BTC-EUR closes on its 1.00 tick"


def test_a_pinned_minute_closes_at_its_price_until_reset():
    server = SimulatorServer().start()
    try:
        minute = now_ms() // 60_000 - 30
        server.control.pin_closes("ETH-EUR", {minute * 60_000: "1234.5"})
        path = f"/ETH-EUR/candles?interval=1m&limit=3&end={(minute + 1) * 60_000}"
        newer, pinned, older = requests.get(server.api_url + path, timeout=10).json()
        assert pinned[0] == minute * 60_000 and pinned[4] == "1234.5"
        assert newer[1] == "1234.5", "the next minute opens at the pinned close"
        assert older[4] != "1234.5"
        server.control.reset()
        assert requests.get(server.api_url + path, timeout=10).json()[1][4] != "1234.5"
    finally:
        server.stop()


def test_the_history_can_be_made_longer_and_reset_restores_its_length():
    server = SimulatorServer().start()
    try:
        path = f"/BTC-EUR/candles?interval=1d&limit=10&end={now_ms()}"

        def moving_days() -> int:
            rows = requests.get(server.api_url + path, timeout=10).json()
            return sum(1 for row in rows if row[2] != row[3])  # high ≠ low: the walk ran

        assert moving_days() == 4  # three days back, and today
        server.control.set_history_days(8)
        assert moving_days() == 9
        server.control.reset()
        assert moving_days() == 4
    finally:
        server.stop()


def test_the_access_window_and_key_checks(exchange):
    url, pair = exchange.api_url, exchange.server.readonly_pair
    assert signed_get(url, pair, "/balance").status_code == 200
    cases = {
        301: signed_get(url, ("short", pair[1]), "/balance"),
        302: signed_get(url, pair, "/balance", timestamp=int(time.time())),
        303: signed_get(url, pair, "/balance", window="70000"),
        304: signed_get(url, pair, "/balance", timestamp=now_ms() - 20_000),
        305: signed_get(url, ("x" * 64, pair[1]), "/balance"),
        309: signed_get(url, (pair[0], "wrong"), "/balance"),
        311: signed_get(url, exchange.server.trade_pair, "/balance"),
    }
    assert {code: r.json()["errorCode"] for code, r in cases.items()} == {c: c for c in cases}
    assert requests.get(f"{url}/balance", timeout=10).json()["errorCode"] == 300


def test_strict_signing_refuses_a_body_other_than_the_one_signed(exchange):
    pair, timestamp = exchange.server.trade_pair, now_ms()
    body = {
        "market": "BTC-EUR",
        "side": "buy",
        "orderType": "market",
        "amountQuote": "10",
        "operatorId": 1,
    }
    compact = json.dumps(body, separators=(",", ":"))

    def post():
        return requests.post(
            f"{exchange.api_url}/order",
            data=json.dumps(body),  # spaced, as the official SDK sends it
            headers={
                "Content-Type": "application/json",
                "Bitvavo-Access-Key": pair[0],
                "Bitvavo-Access-Timestamp": str(timestamp),
                "Bitvavo-Access-Signature": sign(
                    secret=pair[1],
                    timestamp=timestamp,
                    method="POST",
                    path="/v2/order",
                    body=compact,
                ),
            },
            timeout=10,
        )

    assert post().status_code == 200, "lenient by default, as Bitvavo is with the SDK"
    exchange.control.set_strict_signing(True)
    assert post().json()["errorCode"] == 309


def test_rate_limit_headers_come_with_errors_too(exchange):
    answer = signed_get(exchange.api_url, exchange.server.trade_pair, "/balance")
    assert answer.json()["errorCode"] == 311
    assert int(answer.headers["bitvavo-ratelimit-remaining"]) < 1000


def test_exceeding_the_budget_bans_the_key(exchange):
    exchange.control.set_rate_limit(10)
    pair = exchange.server.readonly_pair
    # The exchange fixture's balance snapshot spent 5 points already.
    codes = [signed_get(exchange.api_url, pair, "/balance").status_code for _ in range(2)]
    assert codes == [200, 429]
    banned = signed_get(exchange.api_url, pair, "/balance").json()
    assert banned["errorCode"] == 105 and "The ban expires at" in banned["error"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_command_serves_with_a_starting_balance(clean_env):
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "run_bitvavo_simulator",
            "--port",
            str(port),
            "--balance",
            "EUR=500",
            "--balance",
            "BTC=0.01",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        banner = [process.stdout.readline() for _ in range(4)]
        assert banner[0].strip() == f"Bitvavo simulator on http://127.0.0.1:{port}/v2"
        assert f"secret: {DEMO_READONLY[1]}" in banner[1], "demo pairs are printed"
        assert banner[3].strip() == "balances: EUR=500, BTC=0.01"
        answer = signed_get(f"http://127.0.0.1:{port}/v2", DEMO_READONLY, "/balance")
        assert answer.json() == [
            {"symbol": "BTC", "available": "0.01", "inOrder": "0"},
            {"symbol": "EUR", "available": "500", "inOrder": "0"},
        ]
    finally:
        process.terminate()
        process.wait(timeout=10)
