"""Server-side SVG charts: no JavaScript chart library, nothing fetched at run time."""

from __future__ import annotations

from datetime import date
from html import escape


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    exp = 1.0
    while exp * 10 <= v:
        exp *= 10
    while exp > v:
        exp /= 10
    for m in (1, 2, 2.5, 5, 10):
        if m * exp >= v:
            return m * exp
    return 10 * exp


def throughput_svg(series: list[tuple[date, int, int]], *, width: int = 760, height: int = 200,
                   unit: str = "GiB", divisor: float = 1024 ** 3) -> str:
    """Bars of bytes collected per day, with the dataset count in each bar's tooltip."""
    pad_l, pad_r, pad_t, pad_b = 56, 8, 10, 26
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b
    values = [b / divisor for _, _, b in series]
    top = _nice_max(max(values, default=0))
    n = max(1, len(series))
    slot = plot_w / n
    bar = max(1.0, slot * 0.75)
    parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="100%" '
             f'aria-label="Bytes collected per day" xmlns="http://www.w3.org/2000/svg">']
    for i in range(5):
        y = pad_t + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{pad_l}" y1="{y:.1f}" x2="{width - pad_r}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{pad_l - 6}" y="{y + 4:.1f}" text-anchor="end" class="axis">'
                     f'{top * i / 4:.3g} {unit if i == 4 else ""}</text>')
    for i, ((day, count, nbytes), v) in enumerate(zip(series, values)):
        h = plot_h * v / top if top else 0
        x = pad_l + i * slot + (slot - bar) / 2
        y = pad_t + plot_h - h
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" class="bar">'
                     f'<title>{escape(day.isoformat())}: {count} dataset(s), {v:.2f} {unit}</title></rect>')
        if n <= 14 or i % max(1, n // 8) == 0 or i == n - 1:
            parts.append(f'<text x="{x + bar / 2:.1f}" y="{height - 8}" text-anchor="middle" class="axis">'
                         f'{day.strftime("%d %b")}</text>')
    parts.append("</svg>")
    return "".join(parts)


def histogram_svg(counts: list[float], edges: list[float] | None = None, *, width: int = 160, height: int = 36,
                  color: str | None = None, label: str = "intensity histogram") -> str:
    """A QC histogram as one small filled path (log-scaled counts), with the range in its tooltip.

    256 bins become one ``<path>``: a few hundred bytes, not 256 elements.
    """
    import math

    vals = [math.log1p(max(0.0, float(c))) for c in counts or []]
    top = max(vals, default=0.0) or 1.0
    n = max(1, len(vals))
    step = width / n
    pts = [f"M0,{height}"]
    for i, v in enumerate(vals):
        y = height - (height - 1) * v / top
        pts.append(f"L{i * step:.1f},{y:.1f}L{(i + 1) * step:.1f},{y:.1f}")
    pts.append(f"L{width},{height}Z")
    fill = f"#{color}" if color and len(color) == 6 and all(c in "0123456789abcdefABCDEF" for c in color) else "#2e90fa"
    if fill.lower() in ("#ffffff", "#fff"):
        fill = "#667085"  # a white channel would be invisible on the page
    rng = f": {edges[0]:.6g} to {edges[-1]:.6g}" if edges and len(edges) >= 2 else ""
    return (f'<svg class="histogram" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg"><title>{escape(label)}{escape(rng)} '
            f'(log counts)</title><path d="{"".join(pts)}" fill="{fill}" fill-opacity=".75"/></svg>')
