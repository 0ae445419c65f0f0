"""Read the fields the metadata report compares, from each place they can be: the source's OME
(or microfair's reading of it), the NGFF attributes written to the Zarr, the OME-XML inside the
Zarr, and the REMBI and Dublin Core records.

Every reader returns plain values in one unit per field (µm, s, nm) or None; nothing is guessed.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: OME length units -> micrometres, time units -> seconds (ome_types' enum values)
LENGTH_UM = {"pm": 1e-6, "Å": 1e-4, "nm": 1e-3, "µm": 1.0, "um": 1.0, "mm": 1e3, "cm": 1e4, "m": 1e6}
TIME_S = {"ns": 1e-9, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}
#: NGFF (UDUNITS-2) axis units -> the same factors
NGFF_LENGTH_UM = {"angstrom": 1e-4, "nanometer": 1e-3, "micrometer": 1.0, "millimeter": 1e3,
                  "centimeter": 1e4, "meter": 1e6}
NGFF_TIME_S = {"nanosecond": 1e-9, "microsecond": 1e-6, "millisecond": 1e-3, "second": 1.0,
               "minute": 60.0, "hour": 3600.0}

IMAGE_FIELDS = ("physical_size_x", "physical_size_y", "physical_size_z", "time_increment",
                "objective", "numerical_aperture", "immersion", "acquisition_date", "instrument")
CHANNEL_FIELDS = ("name", "emission_wavelength", "excitation_wavelength", "detector")


@dataclass
class ImageFields:
    """The report's fields of one image; ``channels`` holds one dict per channel."""

    name: str | None = None
    values: dict[str, Any] = field(default_factory=dict)
    channels: list[dict[str, Any]] = field(default_factory=list)
    origin: dict[str, str] = field(default_factory=dict)  # field -> "OME-XML" or "reader"
    channel_origin: dict[int, dict[str, str]] = field(default_factory=dict)  # channel -> field -> "reader"


def _unit(value: Any) -> str | None:
    return getattr(value, "value", value) if value is not None else None


def _scaled(value: Any, unit: Any, table: dict[str, float], default: str) -> float | None:
    if value is None:
        return None
    factor = table.get(_unit(unit) or default)
    return float(value) * factor if factor is not None else None


def parse_ome(xml: str | None) -> tuple[Any | None, str | None]:
    """(ome_types OME, None) or (None, why it could not be read)."""
    if not xml or not xml.strip():
        return None, "no OME-XML"
    from ome_types import from_xml

    try:
        return from_xml(xml, validate=False), None
    except Exception as err:  # noqa: BLE001 - any parse failure is reported, never fatal
        return None, f"OME-XML not readable ({type(err).__name__}: {str(err)[:200]})"


def ome_images(ome: Any) -> list[ImageFields]:
    """Per image: physical sizes, time increment, objective, NA, immersion, date, instrument; per channel:
    name, emission and excitation wavelength (nm) and detector."""
    if ome is None:
        return []
    instruments = {i.id: i for i in ome.instruments}
    out = []
    for image in ome.images:
        px = image.pixels
        inst = instruments.get(image.instrument_ref.id) if image.instrument_ref is not None else None
        if inst is None and len(ome.instruments) == 1:
            inst = ome.instruments[0]
        objective = None
        if inst is not None:
            wanted = image.objective_settings.id if image.objective_settings is not None else None
            objective = next((o for o in inst.objectives if o.id == wanted), None)
            if objective is None and wanted is None and len(inst.objectives) == 1:
                objective = inst.objectives[0]
        microscope = inst.microscope if inst is not None else None
        detectors = {d.id: d for d in inst.detectors} if inst is not None else {}
        words = [w for w in ((microscope.manufacturer, microscope.model) if microscope else ()) if w]
        values = {
            "physical_size_x": _scaled(px.physical_size_x, px.physical_size_x_unit, LENGTH_UM, "µm"),
            "physical_size_y": _scaled(px.physical_size_y, px.physical_size_y_unit, LENGTH_UM, "µm"),
            "physical_size_z": _scaled(px.physical_size_z, px.physical_size_z_unit, LENGTH_UM, "µm"),
            "time_increment": _scaled(px.time_increment, px.time_increment_unit, TIME_S, "s"),
            "objective": (objective.model or "").strip() or None if objective else None,
            "numerical_aperture": float(objective.lens_na) if objective and objective.lens_na else None,
            "immersion": _unit(objective.immersion) if objective else None,
            "acquisition_date": image.acquisition_date.isoformat() if image.acquisition_date else None,
            "instrument": " ".join(words) or None,
        }
        channels = []
        for ch in px.channels:
            det = detectors.get(ch.detector_settings.id) if ch.detector_settings is not None else None
            det_words = [w for w in ((det.manufacturer, det.model) if det else ()) if w]
            channels.append({
                "name": ch.name or None,
                "emission_wavelength": _nm(ch.emission_wavelength, ch.emission_wavelength_unit),
                "excitation_wavelength": _nm(ch.excitation_wavelength, ch.excitation_wavelength_unit),
                "detector": " ".join(det_words) or (_unit(det.type) if det and det.type else None)
                or (det.id if det else None),
            })
        out.append(ImageFields(image.name, values, channels))
    return out


def _nm(value: Any, unit: Any) -> float | None:
    um = _scaled(value, unit, LENGTH_UM, "nm")
    return round(um * 1e3, 6) if um is not None else None


def merge_reader(images: list[ImageFields], image_metadata: dict[str, Any] | None) -> list[ImageFields]:
    """Fill what the OME-XML lacks from microfair's reading of the file (the ``image_metadata`` record):
    the reader's own physical sizes, time interval and channel names."""
    scenes = (image_metadata or {}).get("scenes") or []
    objective = (image_metadata or {}).get("objective") or {}
    instrument = " ".join(w for w in ((image_metadata or {}).get("manufacturer"),
                                      (image_metadata or {}).get("instrument")) if w) or None
    for i, scene in enumerate(scenes):
        if i >= len(images):
            images.append(ImageFields(scene.get("name")))
        img = images[i]
        for f, v in img.values.items():
            if v is not None:
                img.origin.setdefault(f, "OME-XML")
        sizes = scene.get("pixel_size_um") or {}
        reader_values = {
            "physical_size_x": sizes.get("X"), "physical_size_y": sizes.get("Y"), "physical_size_z": sizes.get("Z"),
            "time_increment": scene.get("time_increment_s"),
            "objective": objective.get("model") if i == 0 else None,
            "numerical_aperture": objective.get("numerical_aperture") if i == 0 else None,
            "immersion": objective.get("immersion") if i == 0 else None,
            "acquisition_date": scene.get("acquisition_date"), "instrument": instrument if i == 0 else None,
        }
        for f, v in reader_values.items():
            if img.values.get(f) is None and v is not None:
                img.values[f], img.origin[f] = v, "reader"
        for c, ch in enumerate(scene.get("channels") or []):
            if c >= len(img.channels):
                img.channels.append({k: None for k in CHANNEL_FIELDS})
            for f, key in (("name", "name"), ("emission_wavelength", "emission_nm"),
                           ("excitation_wavelength", "excitation_nm")):
                if img.channels[c].get(f) is None and ch.get(key) is not None:
                    img.channels[c][f] = ch[key]
                    img.channel_origin.setdefault(c, {})[f] = "reader"
    for img in images:
        for f, v in img.values.items():
            if v is not None:
                img.origin.setdefault(f, "OME-XML")
    return images


@dataclass
class NgffImage:
    """What the NGFF attributes of one image group say: scale per axis (in µm / s, None without a unit)
    and the omero channel labels."""

    scale: dict[str, float | None]
    labels: list[str]


def ngff_images(zarr_path: Path) -> tuple[str | None, list[NgffImage], str | None]:
    """(NGFF version, one entry per image group ``0/, 1/ …`` listed in ``OME/series``, problem or None).

    Read from the ``zarr.json`` / ``.zattrs`` files written, not from the conversion's own plan."""
    root = Path(zarr_path)
    v3, v2 = root / "OME" / "zarr.json", root / "OME" / ".zattrs"
    if v3.is_file():
        series = json.loads(v3.read_text(encoding="utf-8")).get("attributes", {}).get("ome", {}).get("series")
    elif v2.is_file():
        series = json.loads(v2.read_text(encoding="utf-8")).get("series")
    else:
        return None, [], f"{root.name} has no OME/ group (not a bioformats2raw container)"
    out, version = [], None
    for path in series or []:
        group = root / str(path)
        if (group / "zarr.json").is_file():
            attrs = json.loads((group / "zarr.json").read_text(encoding="utf-8")).get("attributes", {})
            attrs = attrs.get("ome", {})
            version = attrs.get("version", "0.5")
        else:
            attrs = json.loads((group / ".zattrs").read_text(encoding="utf-8"))
            version = "0.4"
        ms = (attrs.get("multiscales") or [{}])[0]
        axes = ms.get("axes") or []
        transforms = ((ms.get("datasets") or [{}])[0].get("coordinateTransformations") or [])
        scale = next((t.get("scale") for t in transforms if t.get("type") == "scale"), None) or []
        by_axis: dict[str, float | None] = {}
        for axis, value in zip(axes, scale):
            table = NGFF_TIME_S if axis.get("type") == "time" else NGFF_LENGTH_UM
            factor = table.get(axis.get("unit") or "")
            by_axis[axis.get("name")] = float(value) * factor if factor is not None else None
        labels = [str(c.get("label")) for c in (attrs.get("omero") or {}).get("channels") or []]
        out.append(NgffImage(by_axis, labels))
    return version, out, None


def zarr_ome_xml(zarr_path: Path) -> str | None:
    path = Path(zarr_path) / "OME" / "METADATA.ome.xml"
    return path.read_text(encoding="utf-8") if path.is_file() else None
