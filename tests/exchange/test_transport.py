"""The transport: error kinds for every kind of answer, timeouts, bans and budgets shared
through Redis, the exchange's clock, and the audit of order calls."""

import threading
import time
import uuid
from decimal import Decimal

import pytest
from django.core.cache import cache

from exchange.errors import (
    ExchangeNotSent,
    ExchangeOutcomeUnknown,
    ExchangeRateLimited,
    ExchangeRejected,
    error_from_response,
)
from exchange.models import ExchangeCall
from exchange.orders import TradeClient
from exchange.readonly import ReadonlyClient
from exchange.transport import RateLimitState
from tests.workers import wait_for

pytestmark = pytest.mark.django_db


def place(client, client_order_id=None):
    return client.place_market_order(
        market="BTC-EUR",
        side="buy",
        client_order_id=client_order_id or uuid.uuid4(),
        amount_quote=Decimal("20"),
    )


@pytest.mark.parametrize(
    "http_status, error_code, kind, code",
    [
        (400, 216, "rejected", "EXCHANGE_INSUFFICIENT_BALANCE"),
        (400, 217, "rejected", "EXCHANGE_BELOW_MINIMUM"),
        (403, 311, "rejected", "EXCHANGE_PERMISSION_DENIED"),
        (400, 426, "rejected", "EXCHANGE_MARKET_NOT_TRADING"),
        (400, 999, "rejected", "EXCHANGE_REJECTED"),
        (503, 107, "rejected", "EXCHANGE_OVERLOADED"),
        (429, 105, "rate_limited", "EXCHANGE_BANNED"),
        (429, 110, "rate_limited", "EXCHANGE_BANNED"),
        (500, 101, "unknown", "EXCHANGE_OUTCOME_UNKNOWN"),
        (503, 109, "unknown", "EXCHANGE_ENGINE_TIMEOUT"),
        (400, 220, "unknown", "EXCHANGE_CLIENT_ORDER_ID_IN_USE"),
        (502, None, "unknown", "EXCHANGE_OUTCOME_UNKNOWN"),
    ],
)
def test_every_bitvavo_error_has_a_kind_and_a_stable_code(http_status, error_code, kind, code):
    error = error_from_response(http_status=http_status, error_code=error_code, message="m")
    assert (error.kind, error.code, error.bitvavo_error_code) == (kind, code, error_code)
    assert error.http_status_code == http_status


@pytest.mark.parametrize(
    "fault, code, placed",
    [
        ("drop_after_commit", "EXCHANGE_CONNECTION_LOST", 1),
        ("error_101_after_commit", "EXCHANGE_OUTCOME_UNKNOWN", 1),
        ("error_109_after_commit", "EXCHANGE_ENGINE_TIMEOUT", 1),
        ("error_109_no_commit", "EXCHANGE_ENGINE_TIMEOUT", 0),
        ("html_502_no_commit", "EXCHANGE_BAD_RESPONSE", 0),
    ],
)
def test_uncertain_answers_are_unknown_outcomes_and_audited(
    trade_client, exchange, fault, code, placed
):
    exchange.control.inject(fault)
    client_order_id = uuid.uuid4()
    with pytest.raises(ExchangeOutcomeUnknown) as caught:
        place(trade_client, client_order_id)
    assert (caught.value.kind, caught.value.code, caught.value.retryable) == (
        "unknown",
        code,
        False,
    )
    assert len(exchange.orders()) == placed
    call = ExchangeCall.objects.get(client_order_id=client_order_id)
    assert (call.error_kind, call.error_code) == ("unknown", code)
    assert call.request_body["clientOrderId"] == str(client_order_id)


def test_an_html_502_is_kept_as_text_in_the_audit(trade_client, exchange):
    exchange.control.inject("html_502_no_commit")
    with pytest.raises(ExchangeOutcomeUnknown):
        place(trade_client)
    call = ExchangeCall.objects.get()
    assert call.status_code == 502 and "502 Bad Gateway" in call.response_body["text"]


def test_a_dropped_connection_leaves_no_status_in_the_audit(trade_client, exchange):
    exchange.control.inject("drop_after_commit")
    with pytest.raises(ExchangeOutcomeUnknown):
        place(trade_client)
    assert ExchangeCall.objects.get().status_code is None
    assert len(exchange.orders()) == 1, "the exchange did act"


def test_a_read_timeout_is_an_unknown_outcome(trade_client, exchange, settings):
    settings.BITVAVO_READ_TIMEOUT = 0.2
    exchange.control.inject("latency", seconds=1.0)
    with pytest.raises(ExchangeOutcomeUnknown) as caught:
        place(trade_client)
    assert caught.value.code == "EXCHANGE_TIMEOUT"


def test_a_reset_waits_for_a_request_whose_client_gave_up(trade_client, exchange, settings):
    # The slow order still acts at the exchange after the timeout: it must not act after the
    # reset that starts the next test (the simulator waits for it, then forgets it).
    settings.BITVAVO_READ_TIMEOUT = 0.2
    exchange.control.inject("latency", seconds=3.0)
    with pytest.raises(ExchangeOutcomeUnknown):
        place(trade_client)
    assert exchange.control.state()["requests_in_flight"] == 1
    exchange.control.reset()
    assert exchange.control.state()["requests_in_flight"] == 0
    assert exchange.orders() == []


def test_latency_within_the_timeout_is_just_slow(trade_client, exchange):
    exchange.control.inject("latency", seconds=0.3)
    assert place(trade_client)["status"] == "filled"
    assert ExchangeCall.objects.get().latency_ms >= 300


def test_a_refused_connection_is_not_sent_and_may_be_retried(exchange, settings):
    settings.BITVAVO_API_URL = "http://127.0.0.1:9/v2"
    with pytest.raises(ExchangeNotSent) as caught:
        ReadonlyClient().time()
    assert (caught.value.kind, caught.value.code, caught.value.retryable) == (
        "rejected",
        "EXCHANGE_UNREACHABLE",
        True,
    )
    assert isinstance(caught.value, ExchangeRejected)


def test_an_order_not_sent_because_the_clock_is_unreachable(exchange, settings):
    settings.BITVAVO_API_URL = "http://127.0.0.1:9/v2"
    with pytest.raises(ExchangeNotSent) as caught:
        place(TradeClient())
    assert caught.value.code == "EXCHANGE_CLOCK_SYNC_FAILED"
    call = ExchangeCall.objects.get()
    assert (call.status_code, call.error_kind) == (None, "rejected")


def test_a_ban_is_shared_and_nothing_is_sent_while_it_lasts(trade_client, exchange):
    exchange.control.inject("ban_429", seconds=30)
    with pytest.raises(ExchangeRateLimited) as caught:
        place(trade_client)
    assert (caught.value.code, caught.value.bitvavo_error_code) == ("EXCHANGE_BANNED", 105)
    assert 25 < caught.value.extra["retry_after_seconds"] <= 30
    answered = exchange.control.state()["answered_429"]

    # Another client on the same key refuses to send, though the exchange would now accept.
    exchange.control.reset()
    with pytest.raises(ExchangeRateLimited) as caught:
        place(TradeClient())
    assert caught.value.code == "EXCHANGE_BANNED" and caught.value.retryable
    assert exchange.orders() == [] and answered == 1
    refused = ExchangeCall.objects.filter(error_code="EXCHANGE_BANNED", status_code=None)
    assert refused.count() == 1, "the refusal is audited with no response: nothing was sent"


def test_a_ban_reaches_another_process_through_redis(readonly_client, exchange, manage):
    exchange.control.inject("ban_429", seconds=30, method="GET", path="/balance")
    with pytest.raises(ExchangeRateLimited):
        readonly_client.balance()
    assert exchange.control.state()["answered_429"] == 1

    other = manage(
        "shell",
        "-c",
        "from exchange.readonly import ReadonlyClient\n"
        "from exchange.errors import ExchangeError\n"
        "try:\n    ReadonlyClient().balance()\n"
        "except ExchangeError as error:\n    print(error.code)\n",
    )
    assert other.stdout.strip().splitlines()[-1] == "EXCHANGE_BANNED", other.stderr
    assert exchange.control.state()["answered_429"] == 1, "the other process sent nothing"


def hammer_with_six_workers(exchange) -> tuple[list, list]:
    """Six workers on one key send balance reads (weight 5) until each is refused."""
    clients = [ReadonlyClient() for _ in range(6)]
    answered, refused = [], []

    def hammer(client):
        for _ in range(30):
            try:
                client.balance()  # weight 5
                answered.append(1)
            except ExchangeRateLimited as error:
                refused.append(error.code)
                return

    threads = [threading.Thread(target=hammer, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answered, refused


def test_workers_sharing_a_key_stay_under_its_budget_together(exchange):
    # A small budget makes the point fast: six workers, one key.
    exchange.control.set_rate_limit(60)
    answered, refused = hammer_with_six_workers(exchange)
    assert exchange.control.state()["answered_429"] == 0, "never banned"
    assert refused == ["EXCHANGE_RATE_LIMITED"] * 6, "every worker stopped itself"
    assert 1 <= len(answered) <= 2 * 60 // 5  # at most two minute windows


def start_just_before_the_exchanges_minute_turns(exchange, transport, before_ms: int) -> None:
    """Returns once the exchange's clock, as the transport reads it, is at most `before_ms`
    from its minute's turn. The simulator's clock is skewed so that the turn is a second
    away; a loaded machine can miss so narrow a window (the turn passes between two polls),
    and then the next turn is brought a second away again: a bounded number of tries, each
    bounded in time, never a wait for the real next minute."""
    left = []  # the exchange's ms to its turn, at each poll

    def near_or_past() -> bool:
        left.append(60_000 - transport._server_now_ms() % 60_000)
        return left[-1] <= before_ms or left[-1] > 58_000  # > 58 s: the turn went by

    for _ in range(20):
        now = int(time.time() * 1000)
        exchange.control.set_clock_skew(60_000 - now % 60_000 - 1_000)
        cache.delete(transport._offset_key)
        transport.clock_offset_ms()  # learned as a fresh process would
        wait_for(near_or_past, timeout=3, every=0.0002, what="the exchange's minute to turn")
        if left[-1] <= before_ms:
            return
    pytest.fail(f"never caught the exchange's minute {before_ms} ms from turning in 20 tries")


@pytest.mark.parametrize("before_the_turn_ms", [5, 40, 150])
def test_workers_sharing_a_key_stay_under_its_budget_as_the_minute_turns(
    exchange, readonly_client, before_the_turn_ms
):
    # Requests counted in our last minute may land in the exchange's next one.
    exchange.control.set_rate_limit(60)
    start_just_before_the_exchanges_minute_turns(
        exchange, readonly_client._transport, before_the_turn_ms
    )
    answered, refused = hammer_with_six_workers(exchange)
    assert exchange.control.state()["answered_429"] == 0, "never banned"
    assert refused == ["EXCHANGE_RATE_LIMITED"] * 6, "every worker stopped itself"
    assert 1 <= len(answered) <= 2 * 60 // 5


def test_rate_limit_headers_are_recorded(readonly_client, exchange):
    readonly_client.balance()
    state = RateLimitState(exchange.server.readonly_pair[0]).get()
    assert state["limit"] == 1000
    assert 0 < state["remaining"] <= 995
    assert state["reset_at_ms"] % 60_000 == 0


def test_the_exchanges_clock_is_learned(exchange, readonly_client):
    exchange.control.set_clock_skew(30_000)  # three access windows ahead
    cache.delete(readonly_client._transport._offset_key)  # as in a fresh process
    assert readonly_client.balance()
    assert abs(readonly_client._transport.clock_offset_ms() - 30_000) < 1000


def test_a_stale_clock_offset_is_a_rejection_then_relearned(exchange, readonly_client):
    readonly_client.balance()  # learns an offset of about 0
    exchange.control.set_clock_skew(-30_000)
    with pytest.raises(ExchangeRejected) as caught:
        readonly_client.balance()
    assert (caught.value.code, caught.value.bitvavo_error_code) == ("EXCHANGE_CLOCK_DRIFT", 304)
    assert readonly_client.balance(), "the next call learns the new offset"
    assert cache.get(readonly_client._transport._offset_key) < -29_000


def test_an_order_held_up_past_the_access_window_is_not_taken(trade_client, exchange, settings):
    settings.BITVAVO_ACCESS_WINDOW_MS = 500
    exchange.control.inject("latency", seconds=0.8)
    with pytest.raises(ExchangeOutcomeUnknown) as caught:
        place(trade_client)
    assert (caught.value.code, caught.value.bitvavo_error_code) == (
        "EXCHANGE_NOT_PROCESSED_IN_WINDOW",
        108,
    )
    assert exchange.orders() == [], "the reconciler will find nothing, and that is the truth"
