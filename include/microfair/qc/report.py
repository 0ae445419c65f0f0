"""QC report: per scene, per channel, with flags raised against the facility's QcThresholds.

A value out of range is *flagged* with a reason, never dropped: the dataset goes on, and the
facility manager sees why it was flagged. ``QcReport.to_dict()`` is what goes into the
ledger (record ``qc``) and into ``qc.json``; :func:`write_qc_report` also writes the
thumbnails (PNG, max-intensity projection per channel, contrast-stretched).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from microfair.config.core import QcThresholds
from microfair.qc.bitdepth import intensity_range
from microfair.qc.metrics import (
    HIGH_PERCENTILE,
    LOW_PERCENTILE,
    ChannelStats,
    dynamic_range_fraction,
    estimate_snr,
    focus_scores,
    rebin_histogram,
    stretch_to_uint8,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QcFlag:
    """One out-of-range value: which metric, its value, the threshold, and a sentence for people."""

    metric: str
    value: float | None
    threshold: float
    reason: str
    scene: int | None = None
    channel: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "value": self.value, "threshold": self.threshold,
                "reason": self.reason, "scene": self.scene, "channel": self.channel}


def _num(v: float | None, digits: int = 6) -> float | None:
    if v is None:
        return None
    v = float(v)
    if not np.isfinite(v):
        return None
    return round(v, digits)


@dataclass
class ChannelQc:
    index: int
    name: str
    color: str
    minimum: float | None
    maximum: float | None
    percentiles: dict[str, float | None]
    histogram_edges: list[float]
    histogram_counts: list[int]
    n_pixels: int
    n_nan: int
    saturated_count: int | None
    saturated_fraction: float | None
    snr: float | None
    background: float | None
    signal: float | None
    noise_background: float | None
    noise_signal: float | None
    dynamic_range_fraction: float | None
    focus: list[list[float | None]]  # [t][z]
    best_plane: int | None  # z index (first time point)
    best_focus: float | None
    flags: list[QcFlag] = field(default_factory=list)
    range_source: str | None = None  # what the dynamic range is measured against (microfair.qc.bitdepth)
    range_max: float | None = None  # top of that range

    @property
    def window(self) -> tuple[float, float] | None:
        lo, hi = self.percentiles.get(f"p{LOW_PERCENTILE:g}"), self.percentiles.get(f"p{HIGH_PERCENTILE:g}")
        return None if lo is None or hi is None else (lo, hi)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index, "name": self.name, "color": self.color,
            "min": _num(self.minimum), "max": _num(self.maximum),
            "percentiles": {k: _num(v) for k, v in self.percentiles.items()},
            "histogram": {"edges": self.histogram_edges, "counts": self.histogram_counts},
            "n_pixels": self.n_pixels, "n_nan": self.n_nan,
            "saturation": {"count": self.saturated_count, "fraction": _num(self.saturated_fraction, 9)},
            "snr": {"value": _num(self.snr, 3), "background": _num(self.background, 3),
                    "signal": _num(self.signal, 3), "noise_background": _num(self.noise_background, 4),
                    "noise_signal": _num(self.noise_signal, 4),
                    "definition": "SVI: sqrt(photons at the brightest part) = (mu_S - mu_B) / sigma_S"},
            "dynamic_range_fraction": _num(self.dynamic_range_fraction, 6),
            "range_source": self.range_source, "range_max": _num(self.range_max),
            "focus": {"per_plane": [[_num(v, 9) for v in row] for row in self.focus],
                      "best_plane": self.best_plane, "best": _num(self.best_focus, 9),
                      "metric": "normalised variance of the Laplacian, Var(L)/mean(I)^2"},
            "flags": [f.to_dict() for f in self.flags],
        }


@dataclass
class SceneQc:
    index: int
    name: str
    shape: dict[str, int]
    dtype: str
    channels: list[ChannelQc]
    mip: np.ndarray | None = field(default=None, repr=False)  # (C, y, x), first time point
    significant_bits: int | None = None  # bit depth the acquisition's metadata declares

    @property
    def flags(self) -> list[QcFlag]:
        return [f for c in self.channels for f in c.flags]

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "shape": self.shape, "dtype": self.dtype,
                "significant_bits": self.significant_bits, "channels": [c.to_dict() for c in self.channels]}


@dataclass
class QcReport:
    """QC of one dataset (all scenes)."""

    source: str
    thresholds: QcThresholds
    scenes: list[SceneQc]
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    thumbnails: dict[str, str] = field(default_factory=dict)  # filled by write_qc_report

    @property
    def flags(self) -> list[QcFlag]:
        return [f for s in self.scenes for f in s.flags]

    @property
    def passed(self) -> bool:
        return not self.flags

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "created": self.created, "passed": self.passed,
            "thresholds": self.thresholds.model_dump(),
            "flags": [f.to_dict() for f in self.flags],
            "scenes": [s.to_dict() for s in self.scenes],
            "thumbnails": dict(self.thumbnails),
        }


# --------------------------------------------------------------------------- building


def channel_qc(index: int, name: str, color: str, stats: ChannelStats, plane_sums: np.ndarray,
               thresholds: QcThresholds, scene: int = 0, significant_bits: int | None = None) -> ChannelQc:
    """Turn combined statistics of one channel into a :class:`ChannelQc` with its flags.

    ``plane_sums``: (T, Z, PLANE_FIELDS) summed plane statistics of this channel.
    ``significant_bits``: the bit depth the acquisition's metadata declares (None: unknown); the
    dynamic range is measured against it (:func:`microfair.qc.bitdepth.intensity_range`), and a
    pixel is saturated at its top (4095 for 12 bits) rather than at the dtype maximum.
    """
    pct = {f"p{q:g}": stats.percentile(q) for q in (LOW_PERCENTILE, 1, 10, 50, 90, 99, HIGH_PERCENTILE)}
    edges, counts = rebin_histogram(stats, thresholds.histogram_bins)
    snr = estimate_snr(stats)
    available = intensity_range(stats.space.dtype, significant_bits, stats.maximum, stats.minimum)
    sat_value = stats.space.saturation_value
    n_saturated = stats.n_saturated
    if (available is not None and sat_value is not None and available.high < sat_value
            and stats.space.shift == 0 and stats.space.offset == 0):
        # a 12-bit camera saturates at 4095, not at the uint16 maximum; 8/16-bit histograms are exact
        sat_value = available.high
        n_saturated = int(stats.histogram[int(sat_value)]) if int(sat_value) < stats.histogram.size else 0
    sat_frac = (n_saturated / stats.n_valid) if (sat_value is not None and stats.n_valid) else None
    dr = dynamic_range_fraction(stats, None if available is None else (available.low, available.high))
    focus = focus_scores(plane_sums)  # (T, Z)
    first = focus[0] if focus.size else np.array([])
    best = int(np.nanargmax(first)) if first.size and np.isfinite(first).any() else None
    best_focus = float(first[best]) if best is not None else None
    ch = ChannelQc(
        index=index, name=name, color=color, minimum=stats.minimum, maximum=stats.maximum,
        percentiles=pct, histogram_edges=edges, histogram_counts=counts, n_pixels=stats.n_valid,
        n_nan=stats.n_nan, saturated_count=n_saturated if sat_value is not None else None,
        saturated_fraction=sat_frac, snr=snr.snr, background=snr.background, signal=snr.signal,
        noise_background=snr.noise_background, noise_signal=snr.noise_signal, dynamic_range_fraction=dr,
        focus=[[None if not np.isfinite(v) else float(v) for v in row] for row in focus],
        best_plane=best, best_focus=best_focus,
        range_source=available.source if available is not None else None,
        range_max=available.high if available is not None else None,
    )
    ch.flags = flags_for(ch, thresholds, scene)
    return ch


def flags_for(ch: ChannelQc, t: QcThresholds, scene: int | None = None) -> list[QcFlag]:
    """Compare one channel's metrics with the thresholds; every problem becomes a flag."""
    flags: list[QcFlag] = []
    where = f"channel {ch.index} ({ch.name})"

    def flag(metric: str, value: float | None, threshold: float, reason: str) -> None:
        flags.append(QcFlag(metric, _num(value), threshold, f"{where}: {reason}", scene, ch.index))

    if ch.n_pixels == 0:
        flag("pixels", 0, 1, "no finite pixel values")
        return flags
    if ch.saturated_fraction is not None and ch.saturated_fraction > t.saturation_max_fraction:
        flag("saturation", ch.saturated_fraction, t.saturation_max_fraction,
             f"{ch.saturated_fraction:.2%} of pixels are saturated (at {ch.maximum:g}); "
             f"at most {t.saturation_max_fraction:.2%} allowed")
    if ch.snr is None:
        flag("snr", None, t.snr_min, "signal-to-noise ratio could not be estimated")
    elif ch.snr < t.snr_min:
        flag("snr", ch.snr, t.snr_min, f"signal-to-noise ratio {ch.snr:.2f} is below {t.snr_min:g}")
    if t.focus_min > 0:
        if ch.best_focus is None:
            flag("focus", None, t.focus_min, "focus could not be measured")
        elif ch.best_focus < t.focus_min:
            flag("focus", ch.best_focus, t.focus_min,
                 f"best plane (z={ch.best_plane}) has focus score {ch.best_focus:.3g}, below {t.focus_min:g}")
    if ch.dynamic_range_fraction is not None and ch.dynamic_range_fraction < t.dynamic_range_min_fraction:
        flag("dynamic_range", ch.dynamic_range_fraction, t.dynamic_range_min_fraction,
             f"uses {ch.dynamic_range_fraction:.2%} of the available intensity range"
             + (f" (0-{ch.range_max:g}, {ch.range_source})" if ch.range_max is not None else "")
             + f"; at least {t.dynamic_range_min_fraction:.2%} expected")
    return flags


# --------------------------------------------------------------------------- writing


def _hex_rgb(color: str) -> tuple[int, int, int]:
    c = color.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    """Fit a 2-D uint8 image inside size x size (keeping its aspect ratio)."""
    from PIL import Image

    pil = Image.fromarray(image)
    pil.thumbnail((size, size), Image.Resampling.LANCZOS)
    if max(pil.size) < size:  # small images are enlarged, without smoothing
        factor = size / max(pil.size)
        pil = pil.resize((max(1, round(pil.size[0] * factor)), max(1, round(pil.size[1] * factor))),
                         Image.Resampling.NEAREST)
    return np.asarray(pil)


def thumbnails(scene: SceneQc, size: int) -> dict[str, np.ndarray]:
    """Per channel a grey PNG-ready image, plus ``composite`` (channels in their colours)."""
    out: dict[str, np.ndarray] = {}
    if scene.mip is None:
        return out
    composite = None
    for ch in scene.channels:
        if ch.index >= scene.mip.shape[0]:
            continue
        grey = _resize(stretch_to_uint8(scene.mip[ch.index]), size)
        out[f"c{ch.index}"] = grey
        rgb = np.asarray(_hex_rgb(ch.color), dtype=np.float32) / 255.0
        layer = grey[..., None].astype(np.float32) * rgb
        composite = layer if composite is None else composite + layer
    if composite is not None and len(scene.channels) > 1:
        out["composite"] = np.clip(composite, 0, 255).astype(np.uint8)
    return out


def write_qc_report(report: QcReport, folder: Path, *, uid: str | None = None) -> Path:
    """Write ``qc.json`` and ``thumbnails/scene<i>_<c<j>|composite>.png`` into ``folder``.

    Files are written under temporary names and renamed into place. Returns the JSON path.
    """
    from PIL import Image

    folder = Path(folder)
    thumbs = folder / "thumbnails"
    thumbs.mkdir(parents=True, exist_ok=True)
    report.thumbnails = {}
    for scene in report.scenes:
        for key, pixels in thumbnails(scene, report.thresholds.thumbnail_size).items():
            path = thumbs / f"scene{scene.index}_{key}.png"
            tmp = path.with_name(f".{path.name}.tmp")
            Image.fromarray(pixels).save(tmp, format="PNG")
            os.replace(tmp, path)
            report.thumbnails[f"scene{scene.index}/{key}"] = str(path.relative_to(folder))
    target = folder / "qc.json"
    tmp = target.with_name(".qc.json.tmp")
    tmp.write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, target)
    log.info("%s: QC report written to %s (%d flag(s))", uid or report.source, target, len(report.flags))
    return target
