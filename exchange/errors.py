"""One exception family for everything the exchange can answer.

`kind` is what the caller must do about it:
- rejected: the exchange definitely did not act (validation, balance, permissions, market).
- not_sent: the request never reached the exchange (connection refused, connect timeout,
  engine overloaded before taking the order): nothing happened, it may be sent again later.
- rate_limited: refused for the rate limit or a ban; nothing happened.
- unknown: it may have happened (timeouts, dropped connections, 101, 109, 5xx, non-JSON).
  An order in this state is reconciled by lookup, never sent again.
"""

from __future__ import annotations

from config.errors import DomainError


class ExchangeError(DomainError):
    code = "EXCHANGE_ERROR"
    kind = "unknown"
    http_status = 502

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        bitvavo_error_code: int | None = None,
        http_status_code: int | None = None,
        extra: dict | None = None,
    ) -> None:
        super().__init__(message, code=code, extra=extra)
        self.bitvavo_error_code = bitvavo_error_code
        self.http_status_code = http_status_code


class ExchangeRejected(ExchangeError):
    code = "EXCHANGE_REJECTED"
    kind = "rejected"


class ExchangeNotSent(ExchangeError):
    code = "EXCHANGE_UNAVAILABLE"
    kind = "not_sent"


class ExchangeRateLimited(ExchangeError):
    code = "EXCHANGE_RATE_LIMITED"
    kind = "rate_limited"


class ExchangeOutcomeUnknown(ExchangeError):
    code = "EXCHANGE_OUTCOME_UNKNOWN"
    kind = "unknown"


class ExchangeConfigurationError(ExchangeError):
    """A process tried to use a key it must not have, or lacks one it needs."""

    code = "EXCHANGE_MISCONFIGURED"
    kind = "rejected"


# Bitvavo errorCode -> (our exception, our stable code). Anything else 4xx is a rejection,
# anything else 5xx an unknown outcome.
BITVAVO_ERRORS: dict[int, tuple[type[ExchangeError], str]] = {
    101: (ExchangeOutcomeUnknown, "EXCHANGE_OUTCOME_UNKNOWN"),
    105: (ExchangeRateLimited, "EXCHANGE_BANNED"),
    107: (ExchangeNotSent, "EXCHANGE_OVERLOADED"),
    108: (ExchangeOutcomeUnknown, "EXCHANGE_NOT_PROCESSED_IN_WINDOW"),
    109: (ExchangeOutcomeUnknown, "EXCHANGE_ENGINE_TIMEOUT"),
    111: (ExchangeNotSent, "EXCHANGE_UNAVAILABLE"),
    205: (ExchangeRejected, "EXCHANGE_INVALID_PARAMETER"),
    203: (ExchangeRejected, "EXCHANGE_MISSING_PARAMETER"),
    212: (ExchangeRejected, "EXCHANGE_BELOW_MINIMUM"),
    216: (ExchangeRejected, "EXCHANGE_INSUFFICIENT_BALANCE"),
    217: (ExchangeRejected, "EXCHANGE_BELOW_MINIMUM"),
    219: (ExchangeRejected, "EXCHANGE_MARKET_NOT_LISTED"),
    # Our client order id is already on an open order: that order may be ours. Reconcile.
    220: (ExchangeOutcomeUnknown, "EXCHANGE_CLIENT_ORDER_ID_IN_USE"),
    240: (ExchangeRejected, "EXCHANGE_ORDER_NOT_FOUND"),
    304: (ExchangeRejected, "EXCHANGE_CLOCK_DRIFT"),
    309: (ExchangeRejected, "EXCHANGE_BAD_SIGNATURE"),
    310: (ExchangeRejected, "EXCHANGE_PERMISSION_DENIED"),
    311: (ExchangeRejected, "EXCHANGE_PERMISSION_DENIED"),
    312: (ExchangeRejected, "EXCHANGE_PERMISSION_DENIED"),
    400: (ExchangeOutcomeUnknown, "EXCHANGE_OUTCOME_UNKNOWN"),
    419: (ExchangeOutcomeUnknown, "EXCHANGE_OUTCOME_UNKNOWN"),
    422: (ExchangeRejected, "EXCHANGE_PRICE_NOT_ON_TICK"),
    423: (ExchangeRejected, "EXCHANGE_MARKET_NOT_TRADING"),
    424: (ExchangeRejected, "EXCHANGE_MARKET_NOT_TRADING"),
    425: (ExchangeRejected, "EXCHANGE_MARKET_NOT_TRADING"),
    426: (ExchangeRejected, "EXCHANGE_MARKET_NOT_TRADING"),
    429: (ExchangeRejected, "EXCHANGE_TOO_MANY_DECIMALS"),
}


def error_from_response(*, http_status: int, error_code: int | None, message: str) -> ExchangeError:
    if http_status == 429:
        return ExchangeRateLimited(
            message, code="EXCHANGE_BANNED", bitvavo_error_code=error_code, http_status_code=429
        )
    if error_code in BITVAVO_ERRORS:
        cls, code = BITVAVO_ERRORS[error_code]
    elif 400 <= http_status < 500:
        cls, code = ExchangeRejected, "EXCHANGE_REJECTED"
    else:
        cls, code = ExchangeOutcomeUnknown, "EXCHANGE_OUTCOME_UNKNOWN"
    return cls(message, code=code, bitvavo_error_code=error_code, http_status_code=http_status)
