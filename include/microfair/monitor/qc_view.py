"""The QC record and the metadata records (Dublin Core, REMBI) as the detail page shows them.

Real QC records (``microfair.qc``) hold ``scenes[].channels[]`` with statistics, a 256-bin
histogram and flags, and ``thumbnails`` keyed ``scene<i>/c<j>`` and ``scene<i>/composite``.
The page shows one table per scene, one row per channel, the histogram as a small SVG,
and never the record itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from microfair.monitor.charts import histogram_svg

MISSING = "missing"
_THUMB_KEY = re.compile(r"^scene(\d+)/(?:c(\d+)|(composite))$")


@dataclass
class ChannelRow:
    index: int
    name: str
    metrics: list[tuple[str, str]]  # (label, formatted value), in a fixed order
    histogram: str | None  # inline SVG
    flags: list[str]
    thumbnail: int | None = None  # index into the dataset's thumbnail list


@dataclass
class SceneView:
    index: int
    name: str
    shape: str
    dtype: str | None
    channels: list[ChannelRow]
    composite: int | None = None
    flags: list[str] = field(default_factory=list)


def _num(v: Any, fmt: str = ".4g") -> str:
    if v is None:
        return MISSING
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    return format(v, fmt)


def _channel_metrics(ch: dict[str, Any]) -> list[tuple[str, str]]:
    pct = ch.get("percentiles") if isinstance(ch.get("percentiles"), dict) else {}
    sat = ch.get("saturation") if isinstance(ch.get("saturation"), dict) else {}
    snr = ch.get("snr") if isinstance(ch.get("snr"), dict) else {"value": ch.get("snr")}
    focus = ch.get("focus") if isinstance(ch.get("focus"), dict) else {"best": ch.get("focus")}
    dr = ch.get("dynamic_range_fraction")
    out = [("Min", _num(ch.get("min"))), ("Max", _num(ch.get("max")))]
    if pct:
        out.append(("p1 / p50 / p99", " / ".join(_num(pct.get(k)) for k in ("p1", "p50", "p99"))))
    out.append(("Saturated", MISSING if sat.get("fraction") is None else f"{100 * float(sat['fraction']):.2f} %"))
    out.append(("SNR", _num(snr.get("value"), ".3g")))
    rng = f" of 0–{_num(ch['range_max'])}" if ch.get("range_max") is not None else ""
    src = f" ({ch['range_source']})" if ch.get("range_source") else ""
    out.append(("Dynamic range", MISSING if dr is None else f"{100 * float(dr):.1f} %{rng}{src}"))
    out.append(("Focus (best plane)", _num(focus.get("best"), ".3g")
                + (f" (z {focus['best_plane']})" if focus.get("best_plane") is not None else "")))
    return out


def _flag_text(f: Any) -> str:
    return str(f.get("reason") or f.get("metric") or f) if isinstance(f, dict) else str(f)


def qc_scenes(qc: dict[str, Any] | None, thumbnails: list[tuple[str, str]] | None = None) -> list[SceneView]:
    """One view per scene of a QC record (``scenes[].channels``); older flat records become one scene."""
    if not isinstance(qc, dict):
        return []
    thumbs = {label: i for i, (label, _) in enumerate(thumbnails or [])}
    scenes = qc.get("scenes")
    if not isinstance(scenes, list):
        scenes = [{"index": 0, "name": "", "channels": qc.get("channels") or []}] if qc.get("channels") else []
    flags = [f for f in qc.get("flags") or [] if isinstance(f, dict)]
    out = []
    for si, sc in enumerate(s for s in scenes if isinstance(s, dict)):
        idx = int(sc.get("index", si))
        shape = sc.get("shape") if isinstance(sc.get("shape"), dict) else {}
        rows = []
        chans = sc.get("channels") or []
        if isinstance(chans, dict):
            chans = [{"name": k, **(v if isinstance(v, dict) else {})} for k, v in chans.items()]
        for ci, ch in enumerate(c for c in chans if isinstance(c, dict)):
            if isinstance(ch.get("metrics"), dict):  # an older record shape: metrics one level down
                ch = {**ch["metrics"], **ch}
            cidx = int(ch.get("index", ci))
            hist = ch.get("histogram") if isinstance(ch.get("histogram"), dict) else None
            name = str(ch.get("name") or ch.get("channel") or f"channel {cidx}")
            ch_flags = [_flag_text(f) for f in ch.get("flags") or []]
            ch_flags += [_flag_text(f) for f in flags if f.get("scene") == idx and f.get("channel") == cidx
                         and _flag_text(f) not in ch_flags]
            rows.append(ChannelRow(
                cidx, name, _channel_metrics(ch),
                histogram_svg(hist.get("counts") or [], hist.get("edges"), color=ch.get("color"),
                              label=f"{name} intensity histogram") if hist and hist.get("counts") else None,
                ch_flags, thumbs.get(f"scene{idx}/c{cidx}", thumbs.get(name))))
        out.append(SceneView(idx, str(sc.get("name") or f"scene {idx}"),
                             " × ".join(f"{k.upper()} {v}" for k, v in shape.items()), sc.get("dtype"), rows,
                             thumbs.get(f"scene{idx}/composite"),
                             [_flag_text(f) for f in flags if f.get("scene") == idx and f.get("channel") is None]))
    return out


@dataclass
class Entry:
    """One line of a definition list: a text value, a nested list, or missing."""

    key: str
    value: str | None = None
    children: list["Entry"] | None = None
    missing_keys: list[str] | None = None  # a group whose every field is missing, shown on one line

    @property
    def missing(self) -> bool:
        return self.value is None and self.children is None


def _empty(v: Any) -> bool:
    return v is None or v == "" or v == [] or v == {}


def metadata_entries(body: Any, *, skip: tuple[str, ...] = ("missing",), depth: int = 0) -> list[Entry]:
    """A record as nested definition-list entries; ``None`` and empty values become "missing"."""
    if not isinstance(body, dict):
        return [] if _empty(body) else [Entry("value", str(body))]
    out = []
    for key, v in body.items():
        if key in skip and depth == 0:
            continue
        out.append(_entry(str(key), v, depth))
    return out


def _entry(key: str, v: Any, depth: int) -> Entry:
    if _empty(v):
        return Entry(key)
    if isinstance(v, dict):
        if depth >= 4:
            return Entry(key, ", ".join(f"{k}: {x}" for k, x in v.items() if not _empty(x)) or None)
        children = [_entry(str(k), x, depth + 1) for k, x in v.items()]
        if all(c.missing for c in children):
            return Entry(key, missing_keys=[c.key for c in children])
        return Entry(key, children=children)
    if isinstance(v, list):
        if all(not isinstance(x, (dict, list)) for x in v):
            return Entry(key, ", ".join(str(x) for x in v))
        if depth >= 4:
            return Entry(key, f"{len(v)} item(s)")
        return Entry(key, children=[_entry(_item_label(x, i), x, depth + 1) for i, x in enumerate(v)])
    if isinstance(v, bool):
        return Entry(key, "yes" if v else "no")
    return Entry(key, str(v))


def _item_label(x: Any, i: int) -> str:
    if isinstance(x, dict):
        for k in ("name", "title", "id"):
            if isinstance(x.get(k), str) and x.get(k):
                return str(x[k])
    return f"#{i + 1}"


__all__ = ["MISSING", "ChannelRow", "Entry", "SceneView", "metadata_entries", "qc_scenes"]
