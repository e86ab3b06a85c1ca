"""The value-history chart, drawn here as inline SVG: nothing is loaded from elsewhere."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from portfolio.formatting import eur_text

WIDTH, HEIGHT, PAD = 720, 220, 40


def value_chart_svg(points: list[tuple[date, Decimal | None]]) -> SafeString:
    """A line of the daily values; a day without a value (unpriced) is a gap in the line."""
    valued = [(day, value) for day, value in points if value is not None]
    if not valued:
        return format_html(
            '<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="40" role="img" '
            'aria-label="No value history yet"><text x="0" y="25">No value history yet.</text>'
            "</svg>",
            WIDTH,
        )
    first_day, last_day = points[0][0], points[-1][0]
    low, high = min(v for _, v in valued), max(v for _, v in valued)
    span_days = max((last_day - first_day).days, 1)
    span_value = (high - low) or Decimal(1)

    def xy(day: date, value: Decimal) -> str:
        x = PAD + (WIDTH - 2 * PAD) * (day - first_day).days / span_days
        y = HEIGHT - PAD - float((value - low) / span_value) * (HEIGHT - 2 * PAD)
        return f"{x:.1f},{y:.1f}"

    segments, current = [], []
    for day, value in points:
        if value is None:
            if current:
                segments.append(current)
            current = []
        else:
            current.append(xy(day, value))
    if current:
        segments.append(current)
    lines = format_html_join(
        "",
        '<polyline points="{}" fill="none" stroke="#417690" stroke-width="2"/>',
        ((" ".join(s),) for s in segments if len(s) > 1),
    )
    dots = format_html_join(
        "",
        '<circle cx="{}" cy="{}" r="2.5" fill="#417690"/>',
        (tuple(xy(day, value).split(",")) for day, value in valued),
    )
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" '
        'aria-label="Portfolio value by day" id="value-chart">'
        '<line x1="{p}" y1="{b}" x2="{r}" y2="{b}" stroke="#999"/>'
        '<line x1="{p}" y1="{p}" x2="{p}" y2="{b}" stroke="#999"/>'
        '<text x="2" y="{p}" font-size="11">{high}</text>'
        '<text x="2" y="{b}" font-size="11">{low}</text>'
        '<text x="{p}" y="{d}" font-size="11">{first}</text>'
        '<text x="{r}" y="{d}" font-size="11" text-anchor="end">{last}</text>'
        "{lines}{dots}</svg>",
        w=WIDTH,
        h=HEIGHT,
        p=PAD,
        b=HEIGHT - PAD,
        r=WIDTH - PAD,
        d=HEIGHT - PAD + 16,
        high=eur_text(high),
        low=eur_text(low),
        first=first_day.isoformat(),
        last=last_day.isoformat(),
        lines=lines,
        dots=dots,
    )
