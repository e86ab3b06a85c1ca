"""A few standard indicators over candles, in Decimal, for the advisor's prompt.

Plain functions rather than a library: the maintained ones (pandas-ta, ta, TA-Lib) need
pandas and numpy (or a C library) for what is a dozen lines here, and work in floats while
every price in the product is a Decimal. Inputs are oldest first.
"""

from __future__ import annotations

from decimal import Decimal

PLACES = Decimal("0.000001")


def ema(values: list[Decimal], period: int) -> Decimal | None:
    """Exponential moving average seeded with the first value; None without `period` values."""
    if len(values) < period:
        return None
    alpha = Decimal(2) / Decimal(period + 1)
    average = values[0]
    for value in values[1:]:
        average = alpha * value + (1 - alpha) * average
    return average


def rsi(closes: list[Decimal], period: int = 14) -> Decimal | None:
    """Wilder's relative strength index, 0 to 100; None without period + 1 closes."""
    if len(closes) <= period:
        return None
    changes = [b - a for a, b in zip(closes, closes[1:], strict=False)]
    gain = sum((max(c, Decimal(0)) for c in changes[:period]), Decimal(0)) / period
    loss = sum((max(-c, Decimal(0)) for c in changes[:period]), Decimal(0)) / period
    for change in changes[period:]:
        gain = (gain * (period - 1) + max(change, Decimal(0))) / period
        loss = (loss * (period - 1) + max(-change, Decimal(0))) / period
    if loss == 0:
        return Decimal(100) if gain > 0 else Decimal(50)
    return 100 - 100 / (1 + gain / loss)


def atr(highs: list[Decimal], lows: list[Decimal], closes: list[Decimal], period: int = 14):
    """Wilder's average true range; None without period + 1 candles."""
    if len(closes) <= period:
        return None
    ranges = [
        max(high - low, abs(high - previous), abs(low - previous))
        for high, low, previous in zip(highs[1:], lows[1:], closes, strict=False)
    ]
    average = sum(ranges[:period], Decimal(0)) / period
    for true_range in ranges[period:]:
        average = (average * (period - 1) + true_range) / period
    return average


def timeframe_summary(candles) -> dict:
    """One timeframe for the prompt: the move over the window, where the close stands to its
    20-period EMA, RSI(14) and ATR(14) relative to the close. `candles` oldest first."""
    if not candles:
        return {"candles": 0}
    closes = [c.close for c in candles]
    last = closes[-1]
    first_open = candles[0].open

    def relative(value):
        return None if value is None or not last else (value / last).quantize(PLACES)

    average = ema(closes, 20)
    strength = rsi(closes)
    true_range = atr([c.high for c in candles], [c.low for c in candles], closes)
    return {
        "candles": len(candles),
        "close": last,
        "change": ((last - first_open) / first_open).quantize(PLACES) if first_open else None,
        "ema_20_gap": None if average is None else (last / average - 1).quantize(PLACES),
        "rsi_14": None if strength is None else strength.quantize(Decimal("0.01")),
        "atr_14": relative(true_range),
    }
