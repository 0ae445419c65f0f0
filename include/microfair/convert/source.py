"""What a conversion reads from a ``bioio.BioImage``: per scene, a lazy (T, C, Z, Y, X) array
plus channel names, colours and physical pixel sizes.

RGB images (bioio dims ``...S`` with S = 3 or 4 samples) are stored with the samples as
channels: channel ``c`` sample ``s`` becomes output channel ``c * S + s``, named
``<channel> red/green/blue`` (just ``red``, ``green``, ``blue`` for a plain RGB image) and
coloured FF0000 / 00FF00 / 0000FF, so viewers show the true colours as an additive composite.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import dask.array as da

log = logging.getLogger(__name__)

#: Default channel colours (hex RRGGBB) when the file says none: grey for one channel, else these.
PALETTE = ("0000FF", "00FF00", "FF0000", "FF00FF", "00FFFF", "FFFF00", "FFFFFF")
SAMPLE_NAMES = ("red", "green", "blue", "alpha")
SAMPLE_COLORS = ("FF0000", "00FF00", "0000FF", "FFFFFF")


@dataclass
class SceneSource:
    """One scene to convert."""

    index: int
    name: str
    data: da.Array  # (T, C, Z, Y, X)
    channel_names: list[str]
    channel_colors: list[str]
    scale: dict[str, float]  # t, z, y, x (c is 1)
    units: dict[str, str | None]
    rgb: bool


def _ome_channel_colors(img: Any, scene: int, n: int) -> list[str | None]:
    """Channel colours from the OME metadata (None where absent, or all white = unspecified)."""
    try:
        channels = img.ome_metadata.images[scene].pixels.channels
    except Exception:  # no OME metadata for this reader
        return [None] * n
    colors: list[str | None] = []
    for ch in list(channels)[:n]:
        col = getattr(ch, "color", None)
        try:
            r, g, b = col.as_rgb_tuple()[:3] if col is not None else (None, None, None)
        except Exception:
            r = g = b = None
        colors.append(None if r is None else f"{r:02X}{g:02X}{b:02X}")
    colors += [None] * (n - len(colors))
    if n > 1 and all(c in (None, "FFFFFF") for c in colors):
        return [None] * n  # tifffile and others write white for every channel by default
    return colors


def _default_colors(n: int) -> list[str]:
    return ["FFFFFF"] if n == 1 else [PALETTE[i % len(PALETTE)] for i in range(n)]


def scene_source(img: Any, scene: int) -> SceneSource:
    """The lazy pixels and channel description of one scene of ``img`` (sets the current scene)."""
    img.set_scene(scene)
    dims = img.dims
    order = dims.order
    n_samples = int(getattr(dims, "S", 1)) if "S" in order else 1
    names = [str(c) for c in (img.channel_names or [])]
    n_channels = int(dims.C)
    if len(names) != n_channels:
        names = [f"C{c}" for c in range(n_channels)]
    colors = _ome_channel_colors(img, scene, n_channels)
    if n_samples > 1:
        raw = img.get_image_dask_data("TCZYXS")
        t, c, z, y, x, s = raw.shape
        data = raw.transpose(0, 1, 5, 2, 3, 4).reshape((t, c * s, z, y, x))
        out_names = [SAMPLE_NAMES[i] if c == 1 else f"{names[ci]} {SAMPLE_NAMES[i]}"
                     for ci in range(c) for i in range(s)]
        out_colors = [SAMPLE_COLORS[i] for _ in range(c) for i in range(s)]
        names, colors_out, rgb = out_names, out_colors, True
    else:
        if "S" in order:
            data = img.get_image_dask_data("TCZYX", S=0)
        else:
            data = img.get_image_dask_data("TCZYX")
        defaults = _default_colors(n_channels)
        colors_out = [col or defaults[i] for i, col in enumerate(colors)]
        rgb = False
    pps = img.physical_pixel_sizes
    scale = {"t": 1.0, "z": 1.0, "y": 1.0, "x": 1.0}
    units: dict[str, str | None] = {"t": None, "z": None, "y": None, "x": None}
    for axis, value in (("z", pps.Z), ("y", pps.Y), ("x", pps.X)):
        if value is not None and value > 0:
            scale[axis], units[axis] = float(value), "micrometer"  # bioio reports micrometres
    interval = getattr(img, "time_interval", None)
    seconds = _seconds(interval)
    if seconds:
        scale["t"], units["t"] = seconds, "second"
    try:
        scene_name = str(img.scenes[scene])
    except Exception:
        scene_name = str(scene)
    return SceneSource(scene, scene_name, data, names, colors_out, scale, units, rgb)


def _seconds(interval: Any) -> float | None:
    """bioio's time interval (a pint quantity, a number of seconds, or None) in seconds."""
    if interval is None:
        return None
    try:
        if hasattr(interval, "to"):
            return float(interval.to("second").magnitude) or None
        return float(interval) or None
    except Exception:
        return None


def scene_count(img: Any) -> int:
    return len(img.scenes)
