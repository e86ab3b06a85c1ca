"""The prompt's indicators against hand-computed values."""

from decimal import Decimal

from evaluation.indicators import atr, ema, rsi, timeframe_summary
from exchange.readonly import Candle

D = Decimal


def test_ema_weights_recent_values_by_two_over_period_plus_one():
    # alpha = 0.5: 1 → 0.5·2 + 0.5·1 = 1.5 → 0.5·3 + 0.5·1.5 = 2.25
    assert ema([D(1), D(2), D(3)], 3) == D("2.25")
    assert ema([D(1), D(2)], 3) is None


def test_rsi_is_wilder_smoothed_gains_over_losses():
    # changes +1, +1, −1 with period 2: gain 1, loss 0, then gain 0.5, loss 0.5 → RSI 50
    assert rsi([D(1), D(2), D(3), D(2)], period=2) == D(50)
    assert rsi([D(1), D(2), D(3)], period=2) == D(100)
    assert rsi([D(1), D(2)], period=2) is None


def test_atr_is_the_wilder_smoothed_true_range():
    highs, lows, closes = (
        [D(10), D(11), D(12), D(11)],
        [D(8), D(9), D(9), D(10)],
        [
            D(9),
            D(10),
            D(11),
            D(10),
        ],
    )
    # true ranges 2, 3, 1: (2 + 3) / 2 = 2.5, then (2.5 + 1) / 2 = 1.75
    assert atr(highs, lows, closes, period=2) == D("1.75")


def test_a_timeframe_summary_is_relative_to_its_last_close():
    candles = [Candle(i, D(100 + i), D(101 + i), D(99 + i), D(100 + i), D(1)) for i in range(30)]
    summary = timeframe_summary(candles)
    assert summary["candles"] == 30 and summary["close"] == D(129)
    assert summary["change"] == D("0.29")  # 129 / 100 − 1
    assert summary["rsi_14"] == D(100)  # only gains
    assert summary["atr_14"] == (D(2) / D(129)).quantize(D("0.000001"))
    assert summary["ema_20_gap"] > 0
    assert timeframe_summary([]) == {"candles": 0}
