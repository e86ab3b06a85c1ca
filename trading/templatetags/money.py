"""Money, prices and moments as the console shows them (core.money)."""

from django import template

from core import money

register = template.Library()


@register.filter
def eur(value):
    """10.00 EUR"""
    return money.eur(value)


@register.filter
def price(value):
    """65000.00 or 0.00001235: a price per unit, up to 8 decimals."""
    return money.price_text(value) or "-"


@register.filter
def percent(ratio, signed=True):
    """+1.23 % (signed), 52.00 % (percent:False)"""
    return money.percent_text(ratio, signed=bool(signed))


@register.filter
def utc(at):
    """2026-12-02 14:05 UTC"""
    return money.time_text(at)


@register.filter
def quantity(value):
    """A quantity of coins, without trailing zeros."""
    if value is None:
        return "-"
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
