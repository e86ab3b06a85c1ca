"""Client for the simulator's control API, for tests, the demo and the soak run."""

from __future__ import annotations

from decimal import Decimal

import requests


class SimulatorControl:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        if self.url.endswith("/v2"):
            self.url = self.url[: -len("/v2")]

    def _call(self, method: str, path: str, body: dict | None = None):
        response = requests.request(method, f"{self.url}/_sim/{path}", json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        """Back to the starting balances, all markets trading, no orders, faults, fill modes or
        bans, the default rate limit, no clock skew, lenient signing, no pinned closes, the
        starting length of history."""
        self._call("POST", "reset")

    def inject(
        self,
        kind: str,
        *,
        times: int = 1,
        seconds: float = 0.0,
        method: str = "POST",
        path: str = "/order",
    ) -> None:
        """The next `times` matching requests get this fault (see simulator.state.FAULTS)."""
        self._call(
            "POST",
            "faults",
            {"kind": kind, "times": times, "seconds": seconds, "method": method, "path": path},
        )

    def reset_faults(self) -> None:
        self._call("DELETE", "faults")

    def set_fill_mode(
        self,
        status: str = "filled",
        *,
        fraction: Decimal | str = "0.5",
        fills: int = 1,
        answer: str = "final",
        settle_after_lookups: int | None = None,
        settle_after_seconds: float = 0.0,
        fee_currency: str = "quote",
        times: int = 1,
    ) -> None:
        """How the next `times` orders fill (see simulator.state.FillMode):

        - status: the final status: "filled"; "expired" (no liquidity, nothing filled); or
          "canceledMarketProtection" (or another canceled*) with `fraction` of it filled;
        - fills: in how many fills, each one tick worse than the last;
        - answer: what POST /order says: "final", or before the fills, "new" (none yet),
          "partiallyFilled" (some, unsettled, without fee fields) or "unsettled" (the final
          status, every fill unsettled); GET /order and GET /orders show the final order
          from the `settle_after_lookups`-th lookup on (1 when nothing is said), or once
          `settle_after_seconds` have passed;
        - fee_currency: "quote" (EUR), "base" (the asset bought or sold) or any symbol.
        """
        self._call(
            "POST",
            "fill-mode",
            {
                "status": status,
                "fraction": str(fraction),
                "fills": fills,
                "answer": answer,
                "settle_after_lookups": settle_after_lookups,
                "settle_after_seconds": settle_after_seconds,
                "fee_currency": fee_currency,
                "times": times,
            },
        )

    def reset_fill_modes(self) -> None:
        self._call("DELETE", "fill-mode")

    def orders(self) -> list[dict]:
        """Every order the simulator accepted, oldest first: what reached the exchange."""
        return self._call("GET", "orders")

    def set_balance(self, asset: str, amount: Decimal | str) -> None:
        self._call("POST", "balance", {"asset": asset, "amount": str(amount)})

    def set_market_status(self, market: str, status: str) -> None:
        self._call("POST", "market-status", {"market": market, "status": status})

    def set_market_rules(self, market: str, **rules) -> None:
        """Changes what /markets publishes for the market and what orders must meet, by
        Bitvavo's field names (notionalDecimals=1, minOrderInQuoteAsset="30"); reset() undoes
        it."""
        self._call("POST", "market-rules", {"market": market, "rules": rules})

    def set_price(self, market: str, price: Decimal | str) -> None:
        """Fixes the market's last price (tickers and fills) until reset()."""
        self._call("POST", "price", {"market": market, "price": str(price)})

    def set_rate_limit(self, points_per_minute: int) -> None:
        """The per-key budget a minute (Bitvavo's default is 1000); reset() restores it."""
        self._call("POST", "rate-limit", {"points_per_minute": points_per_minute})

    def set_client_order_lookup(self, *, finds_closed: bool) -> None:
        """Whether GET /order by clientOrderId finds closed orders (by default it does not,
        the worst case Bitvavo allows); reset() does not change it."""
        self._call("POST", "client-order-lookup", {"finds_closed": finds_closed})

    def set_strict_signing(self, strict: bool = True) -> None:
        """Strict: only a signature over the exact bytes received passes (no SDK leniency)."""
        self._call("POST", "strict-signing", {"strict": strict})

    def set_clock_skew(self, ms: int) -> None:
        """Runs the exchange's clock `ms` ahead of ours (GET /time and the access window)."""
        self._call("POST", "clock-skew", {"ms": ms})

    def pin_closes(self, market: str, closes: dict[int, Decimal | str]) -> None:
        """The 1-minute candle starting at each timestamp (ms) closes at the given price: a
        known price at a known minute. reset() unpins them."""
        self._call(
            "POST",
            "closes",
            {"market": market, "closes": {str(ms): str(p) for ms, p in closes.items()}},
        )

    def set_history_days(self, days: int) -> None:
        """The price walk starts `days` before now (default 3): more history for a replay.
        Resets everything else, as reset() does; reset() restores the starting length."""
        self._call("POST", "history", {"days": days})

    def state(self) -> dict:
        """Pending faults and fill modes, the number of orders (and of orders not yet showing
        their final state), 429 answers given, API requests and the weight they charged
        since the last reset, and the balances."""
        return self._call("GET", "state")
