"""Inline SVG charts (no JavaScript, no external assets): bars, grouped bars, a heat-map grid.

Every function returns a `markupsafe.Markup` string ready to drop into a Jinja template or an
HTML file; every label is escaped. Charts carry a <title> and `role="img"` with an aria-label,
and each bar a <title> tooltip with its exact value.
"""

from __future__ import annotations

from html import escape
from typing import Sequence

from markupsafe import Markup

PALETTE = ("#1f6feb", "#2da44e", "#bf8700", "#cf222e", "#8250df", "#0a7ea4", "#d4a72c", "#57606a")
FONT = "font-family='system-ui,-apple-system,Segoe UI,Roboto,sans-serif'"


def _fmt(value: float) -> str:
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.1f}"


def _svg_open(width: int, height: int, title: str, css_class: str) -> str:
    t = escape(title)
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' class='{escape(css_class)}' role='img' "
        f"aria-label='{t}' viewBox='0 0 {width} {height}' width='{width}' height='{height}' {FONT} "
        f"font-size='11'><title>{t}</title>"
    )


def empty_chart(title: str, message: str = "no data yet", width: int = 420, height: int = 80) -> Markup:
    return Markup(
        _svg_open(width, height, title, "chart chart-empty")
        + f"<text x='{width // 2}' y='{height // 2}' text-anchor='middle' fill='#57606a'>"
        f"{escape(message)}</text></svg>"
    )


def bar_chart(
    items: Sequence[tuple[str, float]],
    *,
    title: str,
    width: int = 480,
    height: int = 220,
    color: str = PALETTE[0],
    css_class: str = "chart bar-chart",
) -> Markup:
    """Vertical bars, one per (label, value), with the value above each bar."""
    if not items or all(v == 0 for _, v in items):
        return empty_chart(title, width=width)
    top, bottom, left, right = 18, 28, 8, 8
    plot_h = height - top - bottom
    plot_w = width - left - right
    peak = max(v for _, v in items) or 1
    slot = plot_w / len(items)
    bar_w = max(2.0, slot * 0.75)
    parts = [_svg_open(width, height, title, css_class)]
    parts.append(
        f"<line x1='{left}' y1='{top + plot_h}' x2='{width - right}' y2='{top + plot_h}' "
        "stroke='#d0d7de'/>"
    )
    for i, (label, value) in enumerate(items):
        h = plot_h * (value / peak) if peak else 0
        x = left + i * slot + (slot - bar_w) / 2
        y = top + plot_h - h
        lab = escape(str(label))
        parts.append(
            f"<rect class='bar' x='{x:.1f}' y='{y:.1f}' width='{bar_w:.1f}' height='{h:.1f}' "
            f"fill='{color}' data-label='{lab}' data-value='{_fmt(value)}'>"
            f"<title>{lab}: {_fmt(value)}</title></rect>"
        )
        cx = x + bar_w / 2
        parts.append(f"<text x='{cx:.1f}' y='{y - 4:.1f}' text-anchor='middle' fill='#24292f'>"
                     f"{_fmt(value)}</text>")
        parts.append(f"<text x='{cx:.1f}' y='{height - 10}' text-anchor='middle' fill='#57606a'>"
                     f"{lab}</text>")
    parts.append("</svg>")
    return Markup("".join(parts))


def grouped_bar_chart(
    groups: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    title: str,
    width: int = 720,
    height: int = 260,
    css_class: str = "chart grouped-bar-chart",
) -> Markup:
    """Bars grouped by category (x axis); one bar per series inside each group, with a legend.

    `series` is [(name, [value per group]), ...]; later series are drawn darker (newer runs).
    """
    if not groups or not series or all(v == 0 for _, vals in series for v in vals):
        return empty_chart(title, width=width)
    legend_h = 16 * ((len(series) + 1) // 2)
    top, bottom, left, right = 16, 26 + legend_h, 8, 8
    plot_h = height - top - bottom
    plot_w = width - left - right
    peak = max((v for _, vals in series for v in vals), default=0) or 1
    slot = plot_w / len(groups)
    bar_w = max(1.5, slot * 0.8 / len(series))
    parts = [_svg_open(width, height, title, css_class)]
    parts.append(f"<line x1='{left}' y1='{top + plot_h}' x2='{width - right}' y2='{top + plot_h}' "
                 "stroke='#d0d7de'/>")
    n = len(series)
    shades = [_shade(i, n) for i in range(n)]
    for g, group in enumerate(groups):
        gx = left + g * slot + slot * 0.1
        for s, (name, values) in enumerate(series):
            value = values[g] if g < len(values) else 0
            h = plot_h * (value / peak)
            x = gx + s * bar_w
            y = top + plot_h - h
            parts.append(
                f"<rect class='bar' x='{x:.1f}' y='{y:.1f}' width='{bar_w:.1f}' height='{h:.1f}' "
                f"fill='{shades[s]}' data-group='{escape(group)}' data-series='{escape(name)}' "
                f"data-value='{_fmt(value)}'><title>{escape(group)} - {escape(name)}: "
                f"{_fmt(value)}</title></rect>"
            )
        # value of the newest series above the group
        newest = series[-1][1][g] if g < len(series[-1][1]) else 0
        cx = left + g * slot + slot / 2
        parts.append(f"<text x='{cx:.1f}' y='{top + plot_h + 14}' text-anchor='middle' "
                     f"fill='#24292f'>{escape(group)} ({_fmt(newest)})</text>")
    ly = top + plot_h + 30
    col_w = plot_w / 2
    max_chars = max(8, int((col_w - 20) / 6))
    for s, (name, _) in enumerate(series):
        lx = left + (s % 2) * col_w
        yy = ly + (s // 2) * 16
        label = name if len(name) <= max_chars else name[: max_chars - 3] + "..."
        parts.append(f"<rect x='{lx:.1f}' y='{yy - 9}' width='10' height='10' fill='{shades[s]}'/>"
                     f"<text x='{lx + 14:.1f}' y='{yy}' fill='#57606a'>{escape(label)}</text>")
    parts.append("</svg>")
    return Markup("".join(parts))


def _shade(i: int, n: int) -> str:
    """Blue from light (oldest) to dark (newest)."""
    if n <= 1:
        return "#1f6feb"
    t = i / (n - 1)
    start, end = (0xB6, 0xD4, 0xFE), (0x0B, 0x3D, 0x91)
    r, g, b = (round(a + (z - a) * t) for a, z in zip(start, end))
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap(
    rows: Sequence[str],
    cols: Sequence[str],
    cells: dict[str, float],
    *,
    title: str,
    row_title: str = "",
    col_title: str = "",
    cell: int = 56,
    css_class: str = "chart heatmap",
) -> Markup:
    """A grid of counts (key = row label + column label, e.g. "A1"), shaded by value."""
    left, top = 52, 34
    width = left + cell * len(cols) + 8
    height = top + cell * len(rows) + 8
    peak = max(cells.values(), default=0) or 1
    parts = [_svg_open(width, height, title, css_class)]
    if col_title:
        parts.append(f"<text x='{left + cell * len(cols) / 2:.0f}' y='11' text-anchor='middle' "
                     f"fill='#57606a'>{escape(col_title)}</text>")
    if row_title:
        parts.append(f"<text x='4' y='{top - 6}' fill='#57606a'>{escape(row_title)}</text>")
    for c, col in enumerate(cols):
        parts.append(f"<text x='{left + c * cell + cell / 2:.0f}' y='{top - 6}' "
                     f"text-anchor='middle' font-weight='600'>{escape(col)}</text>")
    for r, row in enumerate(rows):
        y = top + r * cell
        parts.append(f"<text x='{left - 8}' y='{y + cell / 2 + 4:.0f}' text-anchor='end' "
                     f"font-weight='600'>{escape(row)}</text>")
        for c, col in enumerate(cols):
            key = f"{row}{col}"
            value = cells.get(key, 0)
            t = value / peak
            fill = _heat(t)
            ink = "#ffffff" if t > 0.55 else "#24292f"
            x = left + c * cell
            parts.append(
                f"<rect class='cell' x='{x}' y='{y}' width='{cell - 2}' height='{cell - 2}' "
                f"fill='{fill}' data-key='{escape(key)}' data-value='{_fmt(value)}'>"
                f"<title>{escape(key)}: {_fmt(value)}</title></rect>"
                f"<text x='{x + (cell - 2) / 2:.0f}' y='{y + cell / 2 + 3:.0f}' "
                f"text-anchor='middle' fill='{ink}'>{_fmt(value)}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def _heat(t: float) -> str:
    start, end = (0xF6, 0xF8, 0xFA), (0x0B, 0x3D, 0x91)
    r, g, b = (round(a + (z - a) * t) for a, z in zip(start, end))
    return f"#{r:02x}{g:02x}{b:02x}"


# --- the charts of the page and of the report ------------------------------------------------------
def funnel_chart(funnel: dict, title: str = "Records per proposed stage, last runs") -> Markup:
    stages = funnel.get("stages") or []
    series = [
        (run["run_id"] + (" (dry run)" if run.get("dry_run") else ""),
         [float(run["counts"].get(s, 0)) for s in stages])
        for run in funnel.get("runs") or []
    ]
    return grouped_bar_chart(stages, series, title=title, css_class="chart funnel-chart")


def histogram_chart(bins: list[dict], title: str = "Score distribution") -> Markup:
    items = [(f"{b['lo']}-{b['hi']}", float(b["count"])) for b in bins]
    return bar_chart(items, title=title, css_class="chart histogram-chart", color=PALETTE[1])


def grade_chart(grades: dict, title: str = "Fit x engagement grade") -> Markup:
    return heatmap(grades["fit"], grades["engagement"], grades["cells"], title=title,
                   row_title="fit", col_title="engagement", css_class="chart grade-matrix")


def counts_chart(counts: dict[str, int], title: str, color: str = PALETTE[0]) -> Markup:
    return bar_chart([(k, float(v)) for k, v in counts.items()], title=title, color=color)
