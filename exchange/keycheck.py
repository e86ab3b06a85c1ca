"""Key self-checks without risk: what a key may do, learned from a harmless probe.

No endpoint reports a key's permissions. Cancelling a random order id cannot cancel anything:
a key that may trade gets 240 (no such order), a view-only key gets 310 (no permission).
"""

from __future__ import annotations

import uuid

from exchange.errors import ExchangeRejected
from exchange.transport import Transport


def probe_can_trade(transport: Transport, *, operator_id: int) -> bool:
    """True if the key may trade (240, unknown order), False if it may not (310).

    Nothing can be cancelled: the order id is random.
    """
    try:
        transport.request(
            "DELETE",
            "/order",
            params={"market": "BTC-EUR", "orderId": str(uuid.uuid4()), "operatorId": operator_id},
        )
    except ExchangeRejected as error:
        if error.bitvavo_error_code == 240:
            return True
        if error.bitvavo_error_code == 310:
            return False
        raise
    return True
