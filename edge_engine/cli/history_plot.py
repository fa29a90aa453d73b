"""Charts of the node history (``local_history.json``) as a standalone SVG, for ``get_node_history --plot``.

Standard library only, like :mod:`edge_engine.cli.ops`: the SVG text is generated here. One panel per figure (CPU %,
memory, disk used, process RSS, input rate of each pipeline), each with axes, UTC time labels and a legend. Every
series is one ``<path class="series">`` whose ``data-points`` attribute is the number of values drawn; a ``None``
value (the figure was unavailable, or the pipeline did not exist yet) breaks the line into a gap. The fine series
cover the last hour; with ``coarse=True`` the 5-minute means of the last day. An empty history draws a single panel
saying "no samples yet".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any
from xml.sax.saxutils import escape

GB = 1024**3
MB = 1024**2
FINE_SPAN_SECONDS = 3600.0
COARSE_SPAN_SECONDS = 86400.0
NO_SAMPLES = "no samples yet"

WIDTH = 900
PANEL_HEIGHT = 190
MARGIN_LEFT = 70
MARGIN_RIGHT = 180  # legend column
MARGIN_TOP = 34
MARGIN_BOTTOM = 30
HEADER = 40
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")

Series = tuple[str, list[float | None]]


def render_svg(history: Mapping[str, Any], coarse: bool = False) -> str:
    """The SVG document charting ``history`` (the content of ``local_history.json``).

    Raises :class:`ValueError` when the content is not a history (lists of the wrong type, bad timestamps).
    """
    data = history.get("coarse") if coarse else history
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ValueError("'coarse' is not an object" if coarse else "the history is not an object")
    span = COARSE_SPAN_SECONDS if coarse else FINE_SPAN_SECONDS
    stamps = _timestamps(data)
    keep = [i for i, ts in enumerate(stamps) if stamps and ts >= stamps[-1] - span]
    times = [stamps[i] for i in keep]
    scope = "last day, 5-minute means" if coarse else "last hour"
    alias = history.get("alias") or history.get("address") or "node"
    title = f"{alias}: node history ({scope}, UTC)"
    if not times:
        return _document(title, [_empty_panel(0, NO_SAMPLES)])

    def column(source: Mapping[str, Any], name: str, scale: float = 1.0) -> list[float | None]:
        values = _list(source, name, len(stamps))
        return [None if (value := values[i]) is None else value / scale for i in keep]

    pipelines = data.get("pipelines") or {}
    if not isinstance(pipelines, Mapping):
        raise ValueError("'pipelines' is not an object")
    panels_spec: list[tuple[str, str, list[Series], float | None]] = [
        ("CPU", "%", [("cpu_load", column(data, "cpu_load"))], 100.0),
        (
            "Memory",
            "GB",
            [("occupied", column(data, "occupied_memory")), ("total", column(data, "total_memory"))],
            None,
        ),
        (
            "Disk (local cache volume)",
            "GB",
            [("used", column(data, "disk_used", GB)), ("total", column(data, "disk_total", GB))],
            None,
        ),
        ("Node process RSS (with children)", "MB", [("process_rss", column(data, "process_rss", MB))], None),
        (
            "Pipeline input rate",
            "inputs/s",
            [(str(name), column(pipelines, name)) for name in sorted(pipelines)],
            None,
        ),
    ]
    panels = [
        _panel(index, name, unit, series, times, (stamps[-1] - span, stamps[-1]), top)
        for index, (name, unit, series, top) in enumerate(panels_spec)
    ]
    return _document(title, panels)


# --- input --------------------------------------------------------------------------------------------------
def _timestamps(data: Mapping[str, Any]) -> list[float]:
    stamps = data.get("timestamps") or []
    if not isinstance(stamps, list):
        raise ValueError("'timestamps' is not a list")
    out = []
    for stamp in stamps:
        if not isinstance(stamp, str):
            raise ValueError(f"bad timestamp {stamp!r}")
        try:
            moment = datetime.fromisoformat(stamp.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"bad timestamp {stamp!r}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        out.append(moment.timestamp())
    return out


def _list(data: Mapping[str, Any], name: str, length: int) -> list[float | None]:
    values = data.get(name) or []
    if not isinstance(values, list):
        raise ValueError(f"{name!r} is not a list")
    clean: list[float | None] = [
        float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None
        for v in values[:length]
    ]
    return clean + [None] * (length - len(clean))


# --- drawing ------------------------------------------------------------------------------------------------
def _document(title: str, panels: Sequence[str]) -> str:
    height = HEADER + PANEL_HEIGHT * max(1, len(panels))
    return "\n".join(
        [
            '<?xml version="1.0" encoding="UTF-8"?>',
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">',
            f"<title>{escape(title)}</title>",
            f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>',
            f'<text x="{WIDTH / 2}" y="24" text-anchor="middle" font-size="15" font-weight="bold">'
            f"{escape(title)}</text>",
            *panels,
            "</svg>",
            "",
        ]
    )


def _frame(index: int) -> tuple[float, float, float, float]:
    """Left, top, width and height of the plot area of panel ``index``."""
    top = HEADER + index * PANEL_HEIGHT + MARGIN_TOP
    return MARGIN_LEFT, top, WIDTH - MARGIN_LEFT - MARGIN_RIGHT, PANEL_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM


def _empty_panel(index: int, message: str, title: str = "") -> str:
    x, y, w, h = _frame(index)
    parts = [f'<g class="panel empty" data-title="{escape(title or message)}">']
    if title:
        parts.append(f'<text class="panel-title" x="{x}" y="{y - 10}" font-weight="bold">{escape(title)}</text>')
    parts.append(f'<rect x="{x}" y="{y}" width="{w}" height="{h}" fill="#f7f7f7" stroke="#999999"/>')
    parts.append(
        f'<text class="message" x="{x + w / 2}" y="{y + h / 2}" text-anchor="middle" font-size="14" '
        f'fill="#666666">{escape(message)}</text>'
    )
    parts.append("</g>")
    return "\n".join(parts)


def _panel(
    index: int,
    name: str,
    unit: str,
    series: list[Series],
    times: list[float],
    window: tuple[float, float],
    top: float | None,
) -> str:
    title = f"{name} ({unit})"
    if not series:
        return _empty_panel(index, "no pipelines", title)
    numbers = [v for _, values in series for v in values if v is not None]
    if not numbers:
        return _empty_panel(index, "no data", title)
    x0, y0, w, h = _frame(index)
    t_lo, t_hi = min(window[0], times[0]), max(window[1], times[-1])
    if t_hi <= t_lo:
        t_hi = t_lo + 1.0
    v_lo = min(0.0, min(numbers))
    v_hi = max(numbers) if top is None else max(top, max(numbers))
    step = _nice_step((v_hi - v_lo) or 1.0)
    v_hi = v_lo + step * math.ceil(((v_hi - v_lo) or 1.0) / step)

    def px(ts: float) -> float:
        return x0 + w * (ts - t_lo) / (t_hi - t_lo)

    def py(value: float) -> float:
        return y0 + h - h * (value - v_lo) / (v_hi - v_lo)

    parts = [f'<g class="panel" data-title="{escape(title)}">']
    parts.append(f'<text class="panel-title" x="{x0}" y="{y0 - 10}" font-weight="bold">{escape(title)}</text>')
    parts.append(f'<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="#fcfcfc" stroke="#999999"/>')
    tick = v_lo
    while tick <= v_hi + step / 2:  # y grid and labels
        y = py(tick)
        parts.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + w}" y2="{y:.1f}" stroke="#e0e0e0"/>')
        parts.append(f'<text x="{x0 - 6}" y="{y + 4:.1f}" text-anchor="end">{_number(tick)}</text>')
        tick += step
    for ts in _time_ticks(t_lo, t_hi):  # x grid and UTC labels
        x = px(ts)
        label = datetime.fromtimestamp(ts, timezone.utc).strftime("%H:%M")
        parts.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y0 + h}" stroke="#eeeeee"/>')
        parts.append(f'<text x="{x:.1f}" y="{y0 + h + 14}" text-anchor="middle">{label}</text>')
    parts.append(f'<text x="{x0 + w}" y="{y0 + h + 27}" text-anchor="end" fill="#666666">time (UTC)</text>')
    for number, (label, values) in enumerate(series):
        color = COLORS[number % len(COLORS)]
        commands: list[str] = []
        pen_down = False
        for ts, value in zip(times, values, strict=True):
            if value is None:
                pen_down = False
                continue
            commands.append(f"{'L' if pen_down else 'M'}{px(ts):.1f},{py(value):.1f}")
            pen_down = True
        count = len(commands)
        if count:
            parts.append(
                f'<path class="series" data-series="{escape(label)}" data-points="{count}" '
                f'd="{" ".join(commands)}" fill="none" stroke="{color}" stroke-width="1.5"/>'
            )
            for ts, value in _isolated_points(times, values):  # a lone value between gaps: mark it
                parts.append(f'<circle cx="{px(ts):.1f}" cy="{py(value):.1f}" r="2" fill="{color}"/>')
        ly = y0 + 8 + 16 * number
        lx = x0 + w + 12
        parts.append(f'<g class="legend"><line x1="{lx}" y1="{ly}" x2="{lx + 18}" y2="{ly}" stroke="{color}" ')
        parts[-1] += f'stroke-width="2"/><text x="{lx + 24}" y="{ly + 4}">{escape(label)}</text></g>'
    parts.append("</g>")
    return "\n".join(parts)


def _isolated_points(times: list[float], values: list[float | None]) -> list[tuple[float, float]]:
    out = []
    for i, value in enumerate(values):
        before = values[i - 1] if i > 0 else None
        after = values[i + 1] if i + 1 < len(values) else None
        if value is not None and before is None and after is None:
            out.append((times[i], value))
    return out


def _nice_step(span: float, ticks: int = 4) -> float:
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def _time_ticks(lo: float, hi: float) -> list[float]:
    span = hi - lo
    step = next((s for s in (60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600) if span / s <= 8), 43200)
    first = math.ceil(lo / step) * step
    return [first + k * step for k in range(int((hi - first) // step) + 1)]


def _number(value: float) -> str:
    if abs(value) >= 100 or value == int(value):
        return f"{value:.0f}"
    return f"{value:.2g}" if abs(value) < 1 else f"{value:.1f}"
