"""What a Leica LIF image holds, in bioio's terms: axis mapping and metadata from liffile.

LAS X stores frames whose two axes need not be Y and X: an *xz* scan stores (Z, X)
frames, an *xt* line scan (T, X). The frame rows become Y, as in Bio-Formats, and we keep
a note of the original axis so nobody mistakes an xz section for an xy plane.

Spectral scans add an emission (``λ``) or excitation (``Λ``) sweep, which bioio does not
model. Each wavelength is a channel: both sweeps are folded into C, one output channel
per (channel, Λ, λ) combination, channel slowest and λ fastest
(``c_out = (c * nΛ + i_Λ) * nλ + i_λ``). So a ``TλZYX`` scan is stored as TCZYX with
C = nλ, and each output channel keeps its wavelength: label ``λ 520 nm`` (``Green λ 520 nm``
when the file has several channels), and Channel@EmissionWavelength / ExcitationWavelength
in the OME metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from xml.etree import ElementTree

import numpy as np

from microfair.imaging.errors import UnsupportedLayout
from microfair.imaging.leica_spectral import SPECTRAL, spectral_channels, sweep_wavelengths_nm
from microfair.imaging.ome_build import ChannelSpec, ObjectiveSpec

#: bioio's axes, in the order our reader returns them.
TARGET_ORDER = ("T", "C", "Z", "Y", "X", "S")

AXIS_MEANING = {
    "C": "C (channels)", "X": "X (width)", "Y": "Y (height)", "Z": "Z (depth)", "T": "T (time)",
    "λ": "λ (emission wavelength sweep)", "Λ": "Λ (excitation wavelength sweep)",
    "A": "A (rotation)", "N": "N (XT slices)", "Q": "Q (T slices)", "L": "L (loop)",
}

#: Axes that can be folded into a free bioio axis (in this order of preference).
FOLDABLE = ("A", "N", "Q", "L")
FREE_SLOTS = ("T", "Z")
#: Order of the source axes merged into the output channel axis: C slowest, λ fastest.
CHANNEL_PARTS = ("C", *SPECTRAL)


class LifLayoutError(UnsupportedLayout):  # a ValueError: the class 'unsupported layout' (errors.py)
    """The image has an axis layout this reader does not map (for example FLIM or mosaics).

    The message names the axes; the file itself is valid (liffile reads it)."""


@dataclass(frozen=True)
class AxisMapping:
    """How the axes stored in the file become bioio's TCZYX[S].

    Several source axes may map to ``C`` (the file's channels and its λ / Λ sweeps): they
    are merged into one channel axis, in :data:`CHANNEL_PARTS` order.
    """

    source: tuple[str, ...]  # liffile order, e.g. ("T", "C", "Z", "X")
    target: tuple[str, ...]  # bioio name of each source axis, e.g. ("T", "C", "Y", "X")
    original: dict[str, str] = field(default_factory=dict)  # bioio axis -> what it really is

    @property
    def output_dims(self) -> str:
        present = set(self.target)
        return "".join(d for d in TARGET_ORDER if d in present or d != "S")

    @property
    def channel_axes(self) -> tuple[str, ...]:
        """Source axes merged into the output C, slowest first (e.g. ``("C", "λ")``)."""
        found = [d for d, t in zip(self.source, self.target) if t == "C"]
        return tuple(sorted(found, key=CHANNEL_PARTS.index))

    def permutation(self) -> tuple[int, ...]:
        """Source-axis order that sorts the axes into TCZYX[S] order (merged channel axes adjacent)."""
        def key(i: int) -> tuple[int, int]:
            sub = CHANNEL_PARTS.index(self.source[i]) if self.target[i] == "C" else 0
            return TARGET_ORDER.index(self.target[i]), sub
        return tuple(sorted(range(len(self.target)), key=key))

    def output_shape(self, source_shape: tuple[int, ...]) -> tuple[int, ...]:
        sizes: dict[str, int] = {}
        for d, n in zip(self.target, source_shape):
            sizes[d] = sizes.get(d, 1) * int(n)
        return tuple(sizes.get(d, 1) for d in self.output_dims)


def map_axes(dims: tuple[str, ...]) -> AxisMapping:
    """Map liffile dimension codes to bioio axes; raise :class:`LifLayoutError` if impossible."""
    unsupported = [d for d in dims if d not in AXIS_MEANING and d not in ("C", "S")]
    if unsupported:
        raise LifLayoutError(
            f"axes {unsupported} (of {''.join(dims)}) are not supported by the microfair LIF reader "
            "(FLIM histograms, mosaics); use the Bio-Formats fallback"
        )
    spatial = [d for d in dims if d not in ("C", "S", *SPECTRAL)]
    if not spatial or spatial[-1] != "X" or (len(spatial) < 2 and not set(SPECTRAL) & set(dims)):
        raise LifLayoutError(f"frames of axes {''.join(dims)} do not end in X")
    rename: dict[str, str] = {d: "C" for d in dims if d in SPECTRAL}
    if len(spatial) >= 2:  # a single-line spectral scan (λ, X) has no row axis: Y is 1
        row = spatial[-2]
        if row != "Y":
            rename[row] = "Y"
            if "Y" in dims:  # e.g. an xzy stack: the stepped Y takes the place the row axis left
                rename["Y"] = row if row in FREE_SLOTS else _free_slot(dims, rename)
    for d in dims:
        if d in FOLDABLE and d not in rename:
            rename[d] = _free_slot(dims, rename)
    target = tuple(rename.get(d, d) for d in dims)
    original = {rename[d]: AXIS_MEANING[d] for d in dims if d in rename and d not in SPECTRAL}
    merged = sorted((d for d, t in zip(dims, target) if t == "C"), key=CHANNEL_PARTS.index)
    if set(merged) & set(SPECTRAL):
        original["C"] = " × ".join(AXIS_MEANING.get(d, "C (channels)") for d in merged) + (
            ", last fastest" if len(merged) > 1 else "")
    return AxisMapping(source=tuple(dims), target=target, original=original)


def _free_slot(dims: tuple[str, ...], rename: dict[str, str]) -> str:
    used = {rename.get(d, d) for d in dims}
    for slot in FREE_SLOTS:
        if slot not in used:
            return slot
    raise LifLayoutError(
        f"no free T or Z axis to hold the extra axes of {''.join(dims)} "
        f"({', '.join(AXIS_MEANING[d] for d in dims if d in FOLDABLE)})"
    )


@dataclass
class LifScene:
    """Everything we read from one LIF image's XML, without touching the pixels."""

    index: int
    name: str
    source_sizes: dict[str, int]
    dtype: str
    mapping: AxisMapping
    pixel_size_um: tuple[float | None, float | None, float | None]  # Z, Y, X after mapping
    time_increment_s: float | None
    channels: list[ChannelSpec]
    acquisition_date: datetime | None
    microscope_model: str | None
    objective: ObjectiveSpec | None
    scan_mode: str | None
    tile: int | None = None  # mosaic tile (liffile axis M) this scene holds, None for a plain image
    tile_axis: int | None = None  # position of M among liffile's axes
    tile_note: str | None = None  # where the tile sits (field and stage position)


def tile_count(image: Any) -> int:
    """Number of mosaic tiles (liffile axis ``M``) of a LIF image; 0 for a plain image."""
    return int(dict(image.sizes).get("M", 0))


def describe(index: int, image: Any, tile: int | None = None) -> LifScene:
    """Read one ``liffile`` image's layout and metadata; for a tile scan, of its tile ``tile``.

    A LAS X tile scan (axis ``M``) is read one scene per tile, in the file's tile order; the tiles are
    not stitched, and each tile's field and stage position are kept in the scene's description.
    """
    sizes = dict(image.sizes)
    tile_axis = None
    if "M" in sizes:
        if tile is None or not 0 <= tile < sizes["M"]:
            raise LifLayoutError(f"tile scan of {sizes['M']} tiles: choose a tile (got {tile})")
        tile_axis = tuple(sizes).index("M")
        del sizes["M"]
    mapping = map_axes(tuple(sizes))
    steps = {d: _step(c) for d, c in image.coords.items()}
    by_target = dict(zip(mapping.target, mapping.source))

    def spatial(axis: str) -> float | None:
        src = by_target.get(axis)
        if src is None or src not in ("X", "Y", "Z") or steps.get(src) is None:
            return None
        return steps[src] * 1e6  # liffile coordinates are in metres

    time_src = by_target.get("T")
    time_increment = steps.get("T") if time_src == "T" else None
    settings = _acquisition_settings(image.xml_element)
    stamps = image.timestamps
    acquired = None
    if stamps is not None and len(stamps):
        acquired = _as_datetime(stamps[0])
    return LifScene(
        index=index,
        name=image.name,
        source_sizes=sizes,
        dtype=str(image.dtype),
        mapping=mapping,
        pixel_size_um=(spatial("Z"), spatial("Y"), spatial("X")),
        time_increment_s=time_increment,
        channels=spectral_channels(_channels(image.xml_element, settings, sizes.get("C", 1)), mapping,
                                   sweep_wavelengths_nm(image.xml_element, sizes), sizes),
        acquisition_date=acquired,
        microscope_model=_text(settings, "MicroscopeModel"),
        objective=_objective(settings),
        scan_mode=_text(settings, "ScanMode"),
        tile=tile if tile_axis is not None else None,
        tile_axis=tile_axis,
        tile_note=_tile_note(image, tile) if tile_axis is not None else None,
    )


def _tile_note(image: Any, tile: int | None) -> str | None:
    n = tile_count(image)
    text = f"tile {tile} of {n} (tiles read one scene each, not stitched)"
    try:
        info = image.tilescan.tiles[tile]
        text += (f", field x {int(info['field_x'])} y {int(info['field_y'])}, stage position "
                 f"x {float(info['pos_x']) * 1e6:.2f} µm y {float(info['pos_y']) * 1e6:.2f} µm")
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        pass
    return text


def _step(coord: np.ndarray) -> float | None:
    coord = np.asarray(coord)
    if coord.ndim != 1 or coord.size < 2 or not np.issubdtype(coord.dtype, np.number):
        return None
    step = float(coord[-1] - coord[0]) / (coord.size - 1)
    return abs(step) if step else None


def _as_datetime(value: np.datetime64) -> datetime | None:
    try:
        seconds = value.astype("datetime64[us]").astype("int64") / 1e6
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (ValueError, OverflowError, TypeError):
        return None


def _acquisition_settings(xml: ElementTree.Element) -> ElementTree.Element | None:
    for tag in ("ATLConfocalSettingDefinition", "ATLCameraSettingDefinition"):
        found = xml.find(f".//{tag}")
        if found is not None:
            return found
    return None


def _text(element: ElementTree.Element | None, key: str) -> str | None:
    if element is None:
        return None
    value = (element.get(key) or "").strip()
    return " ".join(value.split()) or None


def _float(element: ElementTree.Element | None, key: str) -> float | None:
    try:
        value = float(_text(element, key) or "")
    except ValueError:
        return None
    return value if value > 0 else None


def _objective(settings: ElementTree.Element | None) -> ObjectiveSpec | None:
    spec = ObjectiveSpec(
        model=_text(settings, "ObjectiveName"),
        numerical_aperture=_float(settings, "NumericalAperture"),
        magnification=_float(settings, "Magnification"),
        immersion=_text(settings, "Immersion"),
    )
    return spec if any(vars(spec).values()) else None


def _channels(
    xml: ElementTree.Element, settings: ElementTree.Element | None, n: int
) -> list[ChannelSpec]:
    """Channel names: dye of the active detector (confocal), else filter cube, else LUT colour."""
    luts = [c.get("LUTName") or None for c in xml.iter("ChannelDescription")][:n]
    luts += [None] * (n - len(luts))
    confocal = _confocal_channels(settings) if settings is not None else []
    if len(confocal) == n:
        return [ChannelSpec(c.name or luts[i], c.emission_nm) for i, c in enumerate(confocal)]
    cubes = [
        (w.get("FluoCubeName") or w.get("ContrastingMethodName") or "").strip()
        for w in xml.iter("WideFieldChannelInfo")
    ]
    if len(cubes) == n and all(cubes):
        return [ChannelSpec(name) for name in cubes]
    return [ChannelSpec(lut) for lut in luts]


def _confocal_channels(settings: ElementTree.Element) -> list[ChannelSpec]:
    bands = {b.get("Channel"): b for b in settings.iter("MultiBand")}
    out = []
    for det in settings.iter("Detector"):
        if det.get("IsActive") != "1":
            continue
        band = bands.get(det.get("Channel"))
        dye = (band.get("DyeName") or "").strip() if band is not None else ""
        emission = None
        if band is not None:
            lo, hi = _float(band, "TargetWaveLengthBegin"), _float(band, "TargetWaveLengthEnd")
            emission = round((lo + hi) / 2, 1) if lo and hi else None
        out.append(ChannelSpec(dye or (det.get("Name") or "").strip() or None, emission))
    return out
