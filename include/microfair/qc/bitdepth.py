"""The intensity range an acquisition can use: its bit depth when the metadata says it, else its dtype.

A 12-bit camera stores its pixels in uint16, but can only reach 4095: measured against the uint16
range (65535), a well-exposed 12-bit image would use 6 % of it and be flagged as dim. The OME
``Pixels@SignificantBits`` attribute says how many bits are meaningful; readers fill it from the
vendor's metadata (bioio-czi from Zeiss' ``ComponentBitCount``, Bio-Formats from ``BitsPerPixel``,
OME-TIFF writers directly). When it is known, consistent with the type and not exceeded by the
data, the range is ``[0, 2**bits - 1]``; otherwise the dtype's. Floats have no natural range: the
observed ``[min, max]`` is used. The choice is recorded as ``range_source`` in the QC record.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from xml.etree import ElementTree

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IntensityRange:
    """The values a channel could take: ``[low, high]``, and where that comes from, for people."""

    low: float
    high: float
    source: str  # "SignificantBits=12", "dtype", "dtype (SignificantBits=12 ignored: ...)" or "observed"


def intensity_range(dtype: np.dtype, significant_bits: int | None, maximum: float | None,
                    minimum: float | None = None) -> IntensityRange | None:
    """The available range of a channel of ``dtype`` whose metadata declares ``significant_bits``.

    ``maximum``/``minimum`` are the observed extremes: a declared depth the data exceed is wrong
    (or the camera shifted its bits up) and is ignored, with the reason in ``source``.
    """
    dt = np.dtype(dtype)
    if dt.kind == "f":
        if minimum is None or maximum is None:
            return None
        return IntensityRange(float(minimum), float(maximum), "observed")
    info = np.iinfo(dt)
    full = IntensityRange(float(info.min), float(info.max), "dtype")
    if significant_bits is None:
        return full
    bits = int(significant_bits)
    declared = f"SignificantBits={bits}"
    if bits == info.bits:
        return IntensityRange(full.low, full.high, declared)
    if not 0 < bits < info.bits:
        return IntensityRange(full.low, full.high, f"dtype ({declared} ignored: {dt} has {info.bits} bits)")
    if dt.kind != "u":
        return IntensityRange(full.low, full.high, f"dtype ({declared} ignored: signed {dt})")
    top = float(2**bits - 1)
    if maximum is not None and maximum > top:
        return IntensityRange(full.low, full.high,
                              f"dtype ({declared} ignored: the maximum {maximum:g} exceeds {top:g})")
    return IntensityRange(0.0, top, declared)


@lru_cache(maxsize=8)
def significant_bits_in_ome_xml(ome_xml: str | None) -> list[int | None]:
    """``Pixels@SignificantBits`` of every ``Image`` in an OME-XML document, in order (None where absent).

    An empty list when there is no document or it cannot be parsed (the dtype range is then used).
    """
    if not ome_xml or not ome_xml.strip():
        return []
    try:
        root = ElementTree.fromstring(ome_xml)
    except ElementTree.ParseError as err:
        log.debug("OME-XML not parsed for its bit depth: %s", err)
        return []
    out: list[int | None] = []
    for image in root.iter():
        if _local(image.tag) != "Image":
            continue
        pixels = next((p for p in image if _local(p.tag) == "Pixels"), None)
        out.append(_bits(pixels.get("SignificantBits") if pixels is not None else None))
    return out


def significant_bits_of_scene(ome_xml: str | None, index: int) -> int | None:
    """The declared bit depth of scene ``index`` of an OME-XML document, or None."""
    bits = significant_bits_in_ome_xml(ome_xml)
    return bits[index] if 0 <= index < len(bits) else None


def significant_bits_of_image(img: Any) -> list[int | None]:
    """Declared bit depth per scene of an opened ``bioio.BioImage`` (from its OME metadata), or []."""
    try:
        ome = img.ome_metadata
    except Exception as err:  # noqa: BLE001 - many readers have no OME metadata; the dtype range is used
        log.debug("no OME metadata for the bit depth: %s", err)
        raw = getattr(getattr(img, "reader", None), "ome_xml", None)
        return significant_bits_in_ome_xml(raw) if isinstance(raw, str) else []
    images = getattr(ome, "images", None) or []
    return [_bits(getattr(getattr(i, "pixels", None), "significant_bits", None)) for i in images]


def _bits(value: Any) -> int | None:
    try:
        bits = int(value)
    except (TypeError, ValueError):
        return None
    return bits if bits > 0 else None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]
