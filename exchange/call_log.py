"""The order calls' log on a database connection of its own.

An order's ExchangeCall row is opened before the request and completed after it, each on a
fresh connection that is closed at once: a cut or rolled-back caller connection (or a
transaction around the send that fails) cannot take the row with it. No row, no order: if
the row cannot be opened, the order is not sent.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

from django.db import connections
from django.db.utils import load_backend

logger = logging.getLogger(__name__)

ALIAS = "exchange_call_log"
# What an order's row says while its request is out (and forever, if the process dies then).
IN_FLIGHT = "CALL_IN_FLIGHT"


@contextmanager
def call_log_connection():
    """A fresh connection of its own, reached by the yielded alias, closed at the end."""
    settings_dict = dict(connections["default"].settings_dict)
    wrapper = load_backend(settings_dict["ENGINE"]).DatabaseWrapper(settings_dict, ALIAS)
    connections[ALIAS] = wrapper  # this thread only: the ORM reaches it by alias
    try:
        yield ALIAS
    finally:
        wrapper.close()
        del connections[ALIAS]


def call_log_open(**fields) -> int:
    """Writes the row of a call about to be made; returns its id. Raises if it cannot."""
    from exchange.models import ExchangeCall

    with call_log_connection() as alias:
        row = ExchangeCall.objects.using(alias).create(
            status_code=None, error_code=IN_FLIGHT, latency_ms=0, **fields
        )
    return row.pk


def call_log_close(row_id: int, **fields) -> None:
    """Completes the row with what happened; tried twice, each on a fresh connection."""
    from exchange.models import ExchangeCall

    for attempt in (1, 2):
        try:
            with call_log_connection() as alias:
                ExchangeCall.objects.using(alias).filter(pk=row_id).update(**fields)
            return
        except Exception:
            if attempt == 2:
                logger.exception("could not complete the exchange call log row %s", row_id)
