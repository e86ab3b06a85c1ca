"""The scorecard's arithmetic, pure: counts, hit rate, mean net return and Brier score over
scored rows, and the groups the scorecard shows. The API, the console and the replay all
build their figures here."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from trading.validators import CONFIDENCE_LEVELS

RATE_PLACES = Decimal("0.0001")
RETURN_PLACES = Decimal("0.000001")


@dataclass(frozen=True)
class Scored:
    """One proposal (or a would-be one) scored at one horizon."""

    net_return: Decimal
    confidence: int | None = None
    market: str = ""
    advisor: str = ""
    model: str = ""
    human: str = ""  # approved, rejected or undecided
    btc_net_return: Decimal | None = None
    shadow_net_return: Decimal | None = None
    shadow_confidence: int | None = None

    @property
    def hit(self) -> bool:
        return self.net_return > 0


def net_return(*, side: str, entry: Decimal, exit: Decimal, fee: Decimal) -> Decimal:
    """Acting on the proposal for the horizon, in and out, after the taker fee each way:
    s × (exit − entry) / entry − 2 × fee, s = +1 for a buy and −1 for a sell."""
    sign = 1 if side == "buy" else -1
    return (sign * (exit - entry) / entry - 2 * fee).quantize(Decimal("1e-12"))


def stats(pairs: list[tuple[Decimal, int | None]]) -> dict:
    """(net return, stated confidence or None) pairs → count, hits, hit rate, mean net
    return, and the Brier score, mean of (confidence/100 − hit)², when every pair has one."""
    count = len(pairs)
    hits = sum(1 for value, _ in pairs if value > 0)
    with_confidence = [(value, c) for value, c in pairs if c is not None]
    brier = None
    if count and len(with_confidence) == count:
        brier = (
            sum((Decimal(c) / 100 - (1 if value > 0 else 0)) ** 2 for value, c in with_confidence)
            / count
        )
    return {
        "count": count,
        "hits": hits,
        "hit_rate": (Decimal(hits) / count).quantize(RATE_PLACES) if count else None,
        "mean_net_return": (sum(v for v, _ in pairs) / count).quantize(RETURN_PLACES)
        if count
        else None,
        "brier": brier.quantize(RATE_PLACES) if brier is not None else None,
    }


def _grouped(rows: list[Scored], key) -> dict:
    groups = defaultdict(list)
    for row in rows:
        groups[key(row)].append((row.net_return, row.confidence))
    return groups


def scorecard_of(rows: list[Scored], *, horizon_hours: int) -> dict:
    """Every table of the scorecard for rows scored at one horizon."""
    by_confidence = _grouped(rows, lambda r: r.confidence)
    by_market = _grouped(rows, lambda r: r.market)
    by_advisor = _grouped(rows, lambda r: (r.advisor, r.model))
    by_human = _grouped(rows, lambda r: r.human)
    approved = stats(by_human.get("approved", []))
    rejected = stats(by_human.get("rejected", []))
    difference = None
    if approved["count"] and rejected["count"]:
        difference = approved["mean_net_return"] - rejected["mean_net_return"]
    btc = [(r.btc_net_return, None) for r in rows if r.btc_net_return is not None]
    shadow = [
        (r.shadow_net_return, r.shadow_confidence) for r in rows if r.shadow_net_return is not None
    ]
    return {
        "horizon_hours": horizon_hours,
        "overall": stats([(r.net_return, r.confidence) for r in rows]),
        "by_confidence": [
            {"confidence": level, **stats(by_confidence.get(level, []))}
            for level in CONFIDENCE_LEVELS
        ],
        "by_market": [
            {"market": market, **stats(pairs)} for market, pairs in sorted(by_market.items())
        ],
        "by_advisor": [
            {"advisor": advisor, "model": model, **stats(pairs)}
            for (advisor, model), pairs in sorted(by_advisor.items())
        ],
        "human": {
            "approved": approved,
            "rejected": rejected,
            "undecided": stats(by_human.get("undecided", [])),
            "approved_minus_rejected": difference,
        },
        "baselines": [
            # Doing nothing earns nothing, at every decision time.
            {"name": "no_trade", **stats([(Decimal(0), None) for _ in rows])},
            {"name": "buy_and_hold_btc_eur", **stats(btc)},
            {"name": "offline_shadow", **stats(shadow)},
        ],
    }
