"""The order calls' log on a database connection of its own.

An order's ExchangeCall row is opened before the request and completed after it, on a
connection of the log's own, in autocommit: a cut or rolled-back caller connection (or a
transaction around the send that fails) cannot take the row with it. No row, no order: if
the row cannot be opened, the order is not sent. The connection is kept for the thread's
next order (a new connection costs more than the row); one that fails is closed, and the
write is tried once more on a new one.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from contextlib import contextmanager
from typing import TypeVar

from django.db import connections
from django.db.utils import load_backend

logger = logging.getLogger(__name__)

ALIAS = "exchange_call_log"
# What an order's row says while its request is out (and forever, if the process dies then).
IN_FLIGHT = "CALL_IN_FLIGHT"

_own = threading.local()
T = TypeVar("T")


@contextmanager
def call_log_connection():
    """The log's own connection for this thread, reached by the yielded alias."""
    wrapper = getattr(_own, "wrapper", None)
    if wrapper is None:
        settings_dict = dict(connections["default"].settings_dict)
        wrapper = load_backend(settings_dict["ENGINE"]).DatabaseWrapper(settings_dict, ALIAS)
        _own.wrapper = wrapper
        # Kept while its thread lives and closed when the thread ends (its local storage is
        # dropped then, this token with it): threads that come and go leave no connection
        # open behind them. The wrapper itself lives on until a garbage collection.
        _own.token = _ThreadToken()
        weakref.finalize(_own.token, _close_database_connection, wrapper)
    connections[ALIAS] = wrapper  # this thread only: the ORM reaches it by alias
    try:
        yield ALIAS
    except Exception:
        call_log_connection_forget()
        raise


def call_log_connection_forget() -> None:
    """Closes the log's connection of this thread; the next write opens a new one."""
    wrapper = getattr(_own, "wrapper", None)
    _own.wrapper = None
    if wrapper is not None:
        _close_quietly(wrapper)


class _ThreadToken:
    """Held only by one thread's local storage."""


def _close_database_connection(wrapper) -> None:
    # The database connection itself: the wrapper may refuse a close from another thread.
    if wrapper.connection is not None:
        try:
            wrapper.connection.close()
        except Exception:
            logger.debug("closing the call log connection failed", exc_info=True)


def _close_quietly(wrapper) -> None:
    try:
        wrapper.close()
    except Exception:  # a cut connection may not close cleanly: it is dropped anyway
        logger.debug("closing the call log connection failed", exc_info=True)


def _write(write: Callable[[str], T]) -> T:
    """`write(alias)` on the log's connection; once more on a new one if that fails."""
    try:
        with call_log_connection() as alias:
            return write(alias)
    except Exception:
        with call_log_connection() as alias:
            return write(alias)


def call_log_open(**fields) -> int:
    """Writes the row of a call about to be made; returns its id. Raises if it cannot."""
    from exchange.models import ExchangeCall

    def create(alias: str) -> int:
        row = ExchangeCall.objects.using(alias).create(
            status_code=None, error_code=IN_FLIGHT, latency_ms=0, **fields
        )
        return row.pk

    return _write(create)


def call_log_close(row_id: int, **fields) -> None:
    """Completes the row with what happened; a failure is logged, never raised."""
    from exchange.models import ExchangeCall

    try:
        _write(lambda alias: ExchangeCall.objects.using(alias).filter(pk=row_id).update(**fields))
    except Exception:
        logger.exception("could not complete the exchange call log row %s", row_id)
