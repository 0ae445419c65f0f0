"""The optics of each scene of an OME-XML document, read leniently for the Nyquist check.

ElementTree, not ome_types: ome_types refuses the very values (a negative ``PhysicalSizeZ``) that
must become QC flags in :mod:`microfair.qc.nyquist`. Nothing here raises on bad values; they are
listed in ``SceneOptics.problems``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from xml.etree import ElementTree

from microfair.imaging.ome_build import ORIGINAL_AXES_NAMESPACE as ORIGINAL_AXES_NS

_METRES = {"pm": 1e-12, "Å": 1e-10, "nm": 1e-9, "µm": 1e-6, "um": 1e-6, "μm": 1e-6, "mm": 1e-3, "cm": 1e-2,
           "m": 1.0}
_NS = {"ome": "http://www.openmicroscopy.org/Schemas/OME/2016-06"}


# --------------------------------------------------------------------------- inputs


@dataclass
class ChannelOptics:
    index: int
    name: str
    emission_nm: float | None
    excitation_nm: float | None
    mode: str | None = None  # OME Channel@AcquisitionMode, as written
    pinhole_um: float | None = None
    illumination: str | None = None  # OME Channel@IlluminationType


@dataclass
class SceneOptics:
    """What the Nyquist check needs of one scene; a value the file does not hold is None."""

    index: int
    name: str
    na: float | None
    immersion: str | None
    refractive_index: float | None  # ObjectiveSettings@RefractiveIndex, when given
    pixel_nm: dict[str, float | None]  # x, y, z in nanometres (None: unknown)
    sizes: dict[str, int]  # x, y, z sample counts
    axial_axes: set[str] = field(default_factory=lambda: {"z"})  # axes along the optical axis
    channels: list[ChannelOptics] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # values that could not be read


def _float(value: str | None, what: str, problems: list[str]) -> float | None:
    if value is None or not str(value).strip():
        return None
    try:
        v = float(value)
    except ValueError:
        problems.append(f"{what} is not a number ({value!r})")
        return None
    if not math.isfinite(v):
        problems.append(f"{what} is not finite ({value!r})")
        return None
    return v


def _length_nm(el: ElementTree.Element, attr: str, default_unit: str, what: str,
               problems: list[str]) -> float | None:
    v = _float(el.get(attr), what, problems)
    if v is None:
        return None
    unit = el.get(f"{attr}Unit") or default_unit
    if unit not in _METRES:
        problems.append(f"{what} is in a unit that is not a length ({unit!r})")
        return None
    return v * _METRES[unit] / 1e-9


def _find(el: ElementTree.Element, tag: str) -> list[ElementTree.Element]:
    return el.findall(f"ome:{tag}", _NS) or el.findall(tag)


def _original_axes(root: ElementTree.Element) -> dict[str, dict[str, str]]:
    """Annotation ID -> {axis: original axis} from microfair's ``original-axes`` map annotations."""
    out: dict[str, dict[str, str]] = {}
    for sa in _find(root, "StructuredAnnotations"):
        for ann in _find(sa, "MapAnnotation"):
            if ann.get("Namespace") != ORIGINAL_AXES_NS:
                continue
            values = {}
            for value in _find(ann, "Value"):
                for m in _find(value, "M"):
                    values[(m.get("K") or "").upper()] = (m.text or "").strip()
            out[ann.get("ID") or ""] = values
    return out


def scene_optics(ome_xml: str) -> list[SceneOptics]:
    """Read the optics of every image of an OME-XML document (never raises on bad values).

    Raises ``ValueError`` only when the text is not XML at all.
    """
    try:
        root = ElementTree.fromstring(ome_xml)
    except ElementTree.ParseError as exc:
        raise ValueError(f"the OME-XML cannot be parsed: {exc}") from exc
    objectives: dict[str, ElementTree.Element] = {}
    for inst in _find(root, "Instrument"):
        for obj in _find(inst, "Objective"):
            objectives[obj.get("ID") or ""] = obj
    first_objective = next(iter(objectives.values()), None)
    axes_by_ann = _original_axes(root)
    scenes = []
    for index, image in enumerate(_find(root, "Image")):
        problems: list[str] = []
        settings = next(iter(_find(image, "ObjectiveSettings")), None)
        obj = objectives.get(settings.get("ID") or "") if settings is not None else None
        obj = obj if obj is not None else first_objective
        pixels = next(iter(_find(image, "Pixels")), None)
        pixel_nm: dict[str, float | None] = {"x": None, "y": None, "z": None}
        sizes = {"x": 1, "y": 1, "z": 1}
        channels: list[ChannelOptics] = []
        if pixels is not None:
            for axis in "xyz":
                pixel_nm[axis] = _length_nm(pixels, f"PhysicalSize{axis.upper()}", "µm",
                                            f"the {axis} pixel size", problems)
                try:
                    sizes[axis] = int(pixels.get(f"Size{axis.upper()}") or 1)
                except ValueError:
                    problems.append(f"Size{axis.upper()} is not an integer")
            for c, ch in enumerate(_find(pixels, "Channel")):
                channels.append(ChannelOptics(
                    index=c, name=ch.get("Name") or f"C{c}",
                    emission_nm=_length_nm(ch, "EmissionWavelength", "nm", f"channel {c} emission", problems),
                    excitation_nm=_length_nm(ch, "ExcitationWavelength", "nm", f"channel {c} excitation", problems),
                    mode=ch.get("AcquisitionMode"), illumination=ch.get("IlluminationType"),
                    pinhole_um=(lambda v: None if v is None else v / 1000)(
                        _length_nm(ch, "PinholeSize", "µm", f"channel {c} pinhole size", problems)),
                ))
        axial = {"z"}
        for ref in _find(image, "AnnotationRef"):
            original = axes_by_ann.get(ref.get("ID") or "", {})
            for axis, was in original.items():
                was_axis = was[:1].lower()
                if axis.lower() in "xyz" and was_axis in "xyz":
                    if was_axis == "z":
                        axial.add(axis.lower())
                    else:
                        axial.discard(axis.lower())
        scenes.append(SceneOptics(
            index=index, name=image.get("Name") or str(index),
            na=_float(obj.get("LensNA"), "the objective NA", problems) if obj is not None else None,
            immersion=(obj.get("Immersion") or None) if obj is not None else None,
            refractive_index=(_float(settings.get("RefractiveIndex"), "the refractive index", problems)
                              if settings is not None else None),
            pixel_nm=pixel_nm, sizes=sizes, axial_axes=axial, channels=channels, problems=problems,
        ))
    return scenes

__all__ = ["ChannelOptics", "SceneOptics", "scene_optics"]
