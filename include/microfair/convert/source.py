"""What a conversion reads from a ``bioio.BioImage``: per scene, a lazy (T, C, Z, Y, X) array
plus channel names, colours and physical pixel sizes.

RGB images (bioio dims ``...S`` with S = 3 or 4 samples) are stored with the samples as
channels: channel ``c`` sample ``s`` becomes output channel ``c * S + s``, named
``<channel> red/green/blue`` (just ``red``, ``green``, ``blue`` for a plain RGB image) and
coloured FF0000 / 00FF00 / 0000FF, so viewers show the true colours as an additive composite.

Memory must not depend on the file, so the pixels are handed out one plane (or tile) per chunk. Some
plugins give a whole Z stack per chunk (bioio-ome-tiff and bioio-tifffile by default): such a reader is
opened again with ``chunk_dims=["Y", "X"]`` (keeping a samples axis it chunks on) for the conversion;
re-chunking the dask array instead would still read the whole stack for every plane. The re-opened
reader is used for this scene's pixels only; ``img`` keeps its own chunks for everything else.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import dask.array as da

from microfair.convert.tiffplanes import tiff_planes

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


def _ome_seconds(img: Any, scene: int) -> float | None:
    """Pixels@TimeIncrement of the scene's OME metadata, in seconds (None when absent)."""
    try:
        pixels = img.ome_metadata.images[scene].pixels
        unit = getattr(pixels.time_increment_unit, "value", "s")
        factor = {"ns": 1e-9, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}[unit]
        return float(pixels.time_increment) * factor if pixels.time_increment else None
    except Exception:  # noqa: BLE001 - no OME metadata, or none for this scene
        return None


def _default_colors(n: int) -> list[str]:
    return ["FFFFFF"] if n == 1 else [PALETTE[i % len(PALETTE)] for i in range(n)]


#: Axes a plane chunk may span besides Y and X (samples of RGB pixels; bioio-czi needs "A").
SAMPLE_AXES = ("S", "A")


def _spans_planes(data: da.Array, order: str) -> bool:
    """True when one dask chunk of ``data`` (axes ``order``) holds more than one plane (T, C or Z > 1)."""
    return any(ax in order and max(data.chunks[order.index(ax)]) > 1 for ax in ("T", "C", "Z"))


def plane_reader(img: Any, scene: int) -> Any | None:
    """The file of ``img`` opened again with plane chunks (None when its reader cannot do that)."""
    reader = getattr(img, "reader", None)
    path = getattr(reader, "_path", None)
    if reader is None or not path or "chunk_dims" not in getattr(reader, "__dict__", {}):
        log.info("%s: the reader hands out chunks of several planes and cannot re-chunk them; memory grows "
                 "with the stack", path or type(reader).__name__)
        return None
    from bioio import BioImage

    dims = ["Y", "X", *(d for d in SAMPLE_AXES if d in (reader.chunk_dims or []))]
    try:
        again = BioImage(path, reader=type(reader), chunk_dims=dims)
        again.set_scene(scene)
    except Exception as err:  # noqa: BLE001 - keep the reader's own chunks rather than fail
        log.warning("%s: could not re-open with plane chunks (%s); memory grows with the stack", path, err)
        return None
    log.info("%s: %s hands out whole stacks; reading scene %d one plane per chunk", path, type(reader).__name__,
             scene)
    return again


def _pixels(img: Any, scene: int, order: str, **kw: Any) -> da.Array:
    """``img.get_image_dask_data(order, **kw)``: TIFF pages straight through tifffile where that is provably the
    same array (:mod:`microfair.convert.tiffplanes`), else re-read with plane chunks if a chunk spans planes."""
    data = img.get_image_dask_data(order, **kw)
    direct = tiff_planes(img, scene, order, data, **kw)
    if direct is not None:
        return direct
    if _spans_planes(data, order):
        again = plane_reader(img, scene)
        if again is not None:
            data = again.get_image_dask_data(order, **kw)
    return data


def scene_source(img: Any, scene: int) -> SceneSource:
    """The lazy pixels and channel description of one scene of ``img`` (sets the current scene).

    The pixels come one plane (or tile) per chunk, whatever chunks the reader of ``img`` hands out.
    """
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
        raw = _pixels(img, scene, "TCZYXS")
        t, c, z, y, x, s = raw.shape
        data = raw.transpose(0, 1, 5, 2, 3, 4).reshape((t, c * s, z, y, x))
        out_names = [SAMPLE_NAMES[i] if c == 1 else f"{names[ci]} {SAMPLE_NAMES[i]}"
                     for ci in range(c) for i in range(s)]
        out_colors = [SAMPLE_COLORS[i] for _ in range(c) for i in range(s)]
        names, colors_out, rgb = out_names, out_colors, True
    else:
        if "S" in order:
            data = _pixels(img, scene, "TCZYX", S=0)
        else:
            data = _pixels(img, scene, "TCZYX")
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
    seconds = _seconds(interval) or _ome_seconds(img, scene)  # bioio-ome-tiff gives no interval: the OME's
    if seconds:
        scale["t"], units["t"] = seconds, "second"
    try:
        scene_name = str(img.scenes[scene])
    except Exception:
        scene_name = str(scene)
    return SceneSource(scene, scene_name, data, names, colors_out, scale, units, rgb)


def _seconds(interval: Any) -> float | None:
    """bioio's time interval (a timedelta, a pint quantity, a number of seconds, or None) in seconds."""
    if interval is None:
        return None
    if hasattr(interval, "total_seconds"):  # bioio 3 readers give a datetime.timedelta
        return float(interval.total_seconds()) or None
    try:
        if hasattr(interval, "to"):
            return float(interval.to("second").magnitude) or None
        return float(interval) or None
    except Exception:
        return None


def scene_count(img: Any) -> int:
    return len(img.scenes)
