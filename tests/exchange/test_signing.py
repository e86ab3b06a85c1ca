"""Signatures: Bitvavo's published test vectors, and the exact bytes our client sends."""

import pytest

from exchange.transport import sign

VECTORS = [
    (
        1548172481125,
        "POST",
        "/v2/order",
        '{"market":"BTC-EUR","side":"buy","price":"5000","amount":"1.23","orderType":"limit"}',
        "44d022723a20973a18f7ee97398b9fdd405d2d019c8d39e24b8cc0dcb39ca016",
    ),
    (
        1548175200641,
        "GET",
        "/v2/websocket",
        "",
        "653fc0505431c63a043273da4bd2f0927eae83948d796084f313e5d1131b0d6f",
    ),
    (
        1548172481125,
        "GET",
        "/v2/rfq/trades",
        "",
        "5cabebe6735355a6e359bebc4a3c9ceef649afa455b7cf6cc11af65627cb99f3",
    ),
]


@pytest.mark.parametrize("timestamp, method, path, body, expected", VECTORS)
def test_the_published_vectors(timestamp, method, path, body, expected):
    assert sign(secret="bitvavo", timestamp=timestamp, method=method, path=path, body=body) == (
        expected
    )


def test_a_changed_byte_changes_the_signature():
    timestamp, method, path, body, expected = VECTORS[0]
    spaced = body.replace(",", ", ")
    assert sign(secret="bitvavo", timestamp=timestamp, method=method, path=path, body=spaced) != (
        expected
    )
