"""One exception family for everything the exchange can answer.

`kind` is what the caller must do about it:
- rejected: the exchange definitely did not act (validation, balance, permissions, market
  status), or the request never reached it (connection refused, engine overloaded before
  taking the order). Nothing happened.
- rate_limited: refused for the rate limit or a ban, by the exchange or by us before sending.
  Nothing happened; try again after `extra["retry_after_seconds"]`.
- unknown: it may have happened (timeouts, dropped connections, 101, 109, 5xx, non-JSON).
  An order in this state is reconciled by lookup, never sent again.

`retryable` says whether sending the same request again later may succeed. It is never set
for an unknown outcome: that must be looked up first.
"""

from __future__ import annotations

from core.errors import DomainError

REJECTED, RATE_LIMITED, UNKNOWN = "rejected", "rate_limited", "unknown"


class ExchangeError(DomainError):
    code = "EXCHANGE_ERROR"
    kind = UNKNOWN
    retryable = False
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
    kind = REJECTED


class ExchangeNotSent(ExchangeRejected):
    """Nothing reached the exchange's engine, but it may work later (down, overloaded)."""

    code = "EXCHANGE_UNAVAILABLE"
    retryable = True


class ExchangeRateLimited(ExchangeError):
    code = "EXCHANGE_RATE_LIMITED"
    kind = RATE_LIMITED
    retryable = True


class ExchangeOutcomeUnknown(ExchangeError):
    code = "EXCHANGE_OUTCOME_UNKNOWN"
    kind = UNKNOWN


class ExchangeConfigurationError(ExchangeRejected):
    """A process tried to use a key it must not have, or lacks one it needs."""

    code = "EXCHANGE_MISCONFIGURED"


# Bitvavo errorCode -> (our exception, our stable code). Any other 4xx is a rejection, any
# other 5xx an unknown outcome.
BITVAVO_ERRORS: dict[int, tuple[type[ExchangeError], str]] = {
    101: (ExchangeOutcomeUnknown, "EXCHANGE_OUTCOME_UNKNOWN"),
    102: (ExchangeRejected, "EXCHANGE_INVALID_JSON"),
    105: (ExchangeRateLimited, "EXCHANGE_BANNED"),
    107: (ExchangeNotSent, "EXCHANGE_OVERLOADED"),
    108: (ExchangeOutcomeUnknown, "EXCHANGE_NOT_PROCESSED_IN_WINDOW"),
    109: (ExchangeOutcomeUnknown, "EXCHANGE_ENGINE_TIMEOUT"),
    110: (ExchangeRejected, "EXCHANGE_INVALID_ENDPOINT"),
    111: (ExchangeNotSent, "EXCHANGE_UNAVAILABLE"),
    203: (ExchangeRejected, "EXCHANGE_MISSING_PARAMETER"),
    205: (ExchangeRejected, "EXCHANGE_INVALID_PARAMETER"),
    206: (ExchangeRejected, "EXCHANGE_INVALID_PARAMETER"),
    210: (ExchangeRejected, "EXCHANGE_ABOVE_MAXIMUM"),
    212: (ExchangeRejected, "EXCHANGE_BELOW_MINIMUM"),
    216: (ExchangeRejected, "EXCHANGE_INSUFFICIENT_BALANCE"),
    217: (ExchangeRejected, "EXCHANGE_BELOW_MINIMUM"),
    219: (ExchangeRejected, "EXCHANGE_MARKET_NOT_LISTED"),
    # Our client order id is already on an open order: that order may be ours. Reconcile.
    220: (ExchangeOutcomeUnknown, "EXCHANGE_CLIENT_ORDER_ID_IN_USE"),
    233: (ExchangeRejected, "EXCHANGE_ORDER_NOT_ACTIVE"),
    235: (ExchangeRejected, "EXCHANGE_TOO_MANY_OPEN_ORDERS"),
    240: (ExchangeRejected, "EXCHANGE_ORDER_NOT_FOUND"),
    300: (ExchangeRejected, "EXCHANGE_AUTH_FAILED"),
    301: (ExchangeRejected, "EXCHANGE_AUTH_FAILED"),
    302: (ExchangeRejected, "EXCHANGE_AUTH_FAILED"),
    303: (ExchangeRejected, "EXCHANGE_AUTH_FAILED"),
    304: (ExchangeRejected, "EXCHANGE_CLOCK_DRIFT"),
    305: (ExchangeRejected, "EXCHANGE_AUTH_FAILED"),
    306: (ExchangeRejected, "EXCHANGE_AUTH_FAILED"),
    307: (ExchangeRejected, "EXCHANGE_AUTH_FAILED"),
    308: (ExchangeRejected, "EXCHANGE_BAD_SIGNATURE"),
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
    429: (ExchangeRejected, "EXCHANGE_TOO_MANY_DECIMALS"),  # errorCode 429, HTTP 400
}


# Refused at the gateway, before the matching engine saw anything: authentication, a
# timestamp outside the access window (304), permissions. Nothing can have been done, and
# the same request may pass later (the clock re-learned, the key fixed).
BEFORE_ENGINE_CODES = frozenset(
    code for number, (_, code) in BITVAVO_ERRORS.items() if 300 <= number <= 312
)


def never_reached_engine(error_code: str) -> bool:
    return error_code in BEFORE_ENGINE_CODES


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
