"""SVG charts of the storage forecast and footprint (server-side, like :mod:`microfair.monitor.charts`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from html import escape

from microfair.monitor.charts import _nice_max
from microfair.monitor.footprint import Footprint
from microfair.monitor.forecast import Forecast, Growth
from microfair.units import format_bytes

PALETTE = ("#2e90fa", "#12b76a", "#f79009", "#7a5af8", "#f04438", "#0ba5ec", "#667085", "#ee46bc")
GIB = 1024 ** 3


def _x(day: date, start: date, end: date, left: float, width: float) -> float:
    span = max(1, (end - start).days)
    return left + width * (day - start).days / span


def _grid(pad_l: float, pad_t: float, plot_w: float, plot_h: float, label: Callable[[int], str]) -> list[str]:
    """Five horizontal grid lines with their value labels (``label(i)`` for i = 0..4, bottom to top)."""
    parts = []
    for i in range(5):
        yy = pad_t + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{pad_l}" y1="{yy:.1f}" x2="{pad_l + plot_w}" y2="{yy:.1f}" class="grid"/>')
        parts.append(f'<text x="{pad_l - 6}" y="{yy + 4:.1f}" text-anchor="end" class="axis">{label(i)}</text>')
    return parts


def forecast_svg(fc: Forecast, *, width: int = 760, height: int = 240) -> str:
    """Stored bytes per tier and backup target over the last weeks (solid) and projected as far ahead (dashed).

    A horizontal mark shows the level at which a series fills its volume, when that falls in the chart.
    """
    pad_l, pad_r, pad_t, pad_b = 64, 150, 10, 26
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b
    series = [g for g in fc.tiers + fc.backups if any(v for _, v in g.history)]
    today = fc.now.date()
    start = fc.now.date() - timedelta(days=7 * fc.weeks)
    end = today + timedelta(days=7 * fc.weeks)

    def ahead(g: Growth) -> float:
        now_v = float(g.history[-1][1] or 0)
        return now_v + max(0.0, g.per_week or 0.0) * fc.weeks

    def limit(g: Growth) -> float | None:
        return None if g.fills_on is None or g.fills_on > end else float(g.history[-1][1] or 0) + (g.volume_free or 0)

    top_b = max([ahead(g) for g in series] + [limit(g) or 0 for g in series] + [1.0])
    top = _nice_max(top_b / GIB) * GIB

    def y(v: float) -> float:
        return pad_t + plot_h - plot_h * v / top

    parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="100%" data-testid="forecast-chart" '
             f'aria-label="Stored bytes per tier, last {fc.weeks} weeks and projected" '
             f'xmlns="http://www.w3.org/2000/svg">']
    parts += _grid(pad_l, pad_t, plot_w, plot_h, lambda i: escape(format_bytes(top * i / 4)))
    x_now = _x(today, start, end, pad_l, plot_w)
    parts.append(f'<line x1="{x_now:.1f}" y1="{pad_t}" x2="{x_now:.1f}" y2="{pad_t + plot_h}" class="grid" '
                 f'stroke-dasharray="2 3"/><text x="{x_now:.1f}" y="{height - 8}" text-anchor="middle" '
                 f'class="axis">today</text>')
    for day, anchor in ((start, "start"), (end, "end")):
        parts.append(f'<text x="{_x(day, start, end, pad_l, plot_w):.1f}" y="{height - 8}" text-anchor="{anchor}" '
                     f'class="axis">{day.strftime("%d %b %Y")}</text>')
    for k, g in enumerate(series):
        color = PALETTE[k % len(PALETTE)]
        label = g.name if g.kind == "tier" else f"backup {g.name}"
        pts = " ".join(f"{_x(d, start, end, pad_l, plot_w):.1f},{y(float(v)):.1f}" for d, v in g.history
                       if v is not None)
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2" '
                     f'data-series="{escape(label)}"><title>{escape(label)}: {escape(format_bytes(g.total_bytes))}'
                     f', {escape(format_bytes(g.per_week))} per week</title></polyline>')
        if g.per_week is not None and g.per_week > 0:
            parts.append(f'<line x1="{x_now:.1f}" y1="{y(float(g.history[-1][1] or 0)):.1f}" '
                         f'x2="{pad_l + plot_w:.1f}" y2="{y(ahead(g)):.1f}" stroke="{color}" stroke-width="2" '
                         f'stroke-dasharray="6 4" data-projection="{escape(label)}"/>')
        lim = limit(g)
        if lim is not None:
            parts.append(f'<line x1="{pad_l}" y1="{y(lim):.1f}" x2="{pad_l + plot_w}" y2="{y(lim):.1f}" '
                         f'stroke="{color}" stroke-dasharray="1 3" data-full="{escape(label)}"><title>{escape(label)} '
                         f'full around {g.fills_on}</title></line>')
        fills = f"full {g.fills_on:%d %b %Y}" if g.fills_on else "not filling"
        ly = pad_t + 14 + 16 * k
        parts.append(f'<rect x="{width - pad_r + 8}" y="{ly - 9}" width="10" height="10" fill="{color}"/>'
                     f'<text x="{width - pad_r + 22}" y="{ly}" class="axis">{escape(label)} · {escape(fills)}</text>')
    if not series:
        parts.append(f'<text x="{pad_l + plot_w / 2}" y="{pad_t + plot_h / 2}" text-anchor="middle" class="axis">'
                     'nothing stored yet</text>')
    parts.append("</svg>")
    return "".join(parts)


def footprint_svg(fp: Footprint, *, width: int = 760, height: int = 200) -> str:
    """Bars of kg CO₂e per year, stacked by project (tooltips: TB-years and kWh)."""
    pad_l, pad_r, pad_t, pad_b = 64, 150, 10, 26
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b
    years = sorted({r.year for r in fp.rows})
    projects = sorted({r.project for r in fp.rows})
    totals = {y: sum(r.kgco2e for r in fp.rows if r.year == y) for y in years}
    top = _nice_max(max(totals.values(), default=0.0))
    slot = plot_w / max(1, len(years))
    bar = max(4.0, slot * 0.6)
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="100%" data-testid="footprint-chart" '
             f'aria-label="Estimated kg CO2e per year and project" xmlns="http://www.w3.org/2000/svg">']
    parts += _grid(pad_l, pad_t, plot_w, plot_h, lambda i: f'{top * i / 4:.3g}{" kg CO₂e" if i == 4 else ""}')
    for i, year in enumerate(years):
        x = pad_l + i * slot + (slot - bar) / 2
        base = pad_t + plot_h
        for k, project in enumerate(projects):
            row = next((r for r in fp.rows if r.year == year and r.project == project), None)
            if row is None or row.kgco2e <= 0:
                continue
            h = plot_h * row.kgco2e / top
            base -= h
            parts.append(f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                         f'fill="{PALETTE[k % len(PALETTE)]}" data-year="{year}" data-project="{escape(project)}">'
                         f'<title>{year} {escape(project)}: {row.kgco2e:.3g} kg CO₂e, {row.kwh:.3g} kWh, '
                         f'{row.tb_years:.3g} TB-years ({escape(format_bytes(row.stored_bytes))} stored)'
                         '</title></rect>')
        parts.append(f'<text x="{x + bar / 2:.1f}" y="{height - 8}" text-anchor="middle" class="axis">{year}</text>')
    for k, project in enumerate(projects):
        ly = pad_t + 14 + 16 * k
        parts.append(f'<rect x="{width - pad_r + 8}" y="{ly - 9}" width="10" height="10" '
                     f'fill="{PALETTE[k % len(PALETTE)]}"/><text x="{width - pad_r + 22}" y="{ly}" '
                     f'class="axis">{escape(project)}</text>')
    if not years:
        parts.append(f'<text x="{pad_l + plot_w / 2}" y="{pad_t + plot_h / 2}" text-anchor="middle" class="axis">'
                     'nothing stored yet</text>')
    parts.append("</svg>")
    return "".join(parts)


__all__ = ["footprint_svg", "forecast_context", "forecast_svg"]


_CACHE: dict[tuple[int, int, str], tuple[float, dict[str, object]]] = {}
CACHE_SECONDS = 60.0  # growth per week barely moves in a minute; 10,000 datasets take ~1 s to read


def forecast_context(cfg: object, ledger: object) -> dict[str, object]:
    """What ``_overview_forecast.html`` reads: the forecast, the footprint and their charts.

    Kept for ``CACHE_SECONDS`` per configuration and ledger (the overview refreshes every few seconds).
    A failure here is logged and leaves the section out: the overview itself must still render.
    """
    import logging
    import time

    from microfair.monitor.footprint import footprint
    from microfair.monitor.forecast import read_items, storage_forecast

    key = (id(cfg), id(ledger), str(getattr(ledger, "url", "")))
    hit = _CACHE.get(key)
    if hit is not None and time.monotonic() - hit[0] < CACHE_SECONDS:
        return hit[1]
    try:
        items = read_items(ledger)  # type: ignore[arg-type]
        fc = storage_forecast(cfg, ledger, items=items)  # type: ignore[arg-type]
        fp = footprint(cfg, ledger, items=items)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001
        logging.getLogger(__name__).exception("dashboard: storage forecast unavailable")
        return {"fc": None}
    ctx: dict[str, object] = {"fc": fc, "fp": fp, "forecast_chart": forecast_svg(fc),
                              "footprint_chart": footprint_svg(fp)}
    _CACHE.clear()  # one facility per process: keep only the latest
    _CACHE[key] = (time.monotonic(), ctx)
    return ctx
