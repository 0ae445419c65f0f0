"""Technical metadata of one microscope file, read through :func:`microfair.imaging.open_image`.

Everything comes from the reader (bioio's standard properties first, then its OME
metadata); nothing is guessed. A value the file does not hold stays ``None``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from bioio import BioImage
from ome_types import OME

from microfair.imaging import open_image, reader_identity
from microfair.imaging.ome_build import ChannelSpec, ImageSpec, build_ome

log = logging.getLogger(__name__)


@dataclass
class ChannelInfo:
    name: str | None
    emission_nm: float | None = None
    excitation_nm: float | None = None
    fluor: str | None = None


@dataclass
class ObjectiveInfo:
    model: str | None = None
    numerical_aperture: float | None = None
    magnification: float | None = None
    immersion: str | None = None


@dataclass
class SceneMetadata:
    index: int
    name: str
    dims: dict[str, int]  # bioio order: T, C, Z, Y, X and S (RGB samples) when present
    dtype: str
    pixel_size_um: dict[str, float | None]  # Z, Y, X in micrometres
    channels: list[ChannelInfo]
    time_increment_s: float | None = None
    acquisition_date: datetime | None = None
    original_axes: dict[str, str] = field(default_factory=dict)  # bioio axis -> original axis
    significant_bits: int | None = None  # OME Pixels@SignificantBits: the camera's bit depth, when declared


@dataclass
class ImageMetadata:
    """What microfair knows about one file; ``to_dict()`` is JSON-serialisable."""

    file_name: str
    reader: str
    reader_version: str | None
    scenes: list[SceneMetadata]
    instrument: str | None  # microscope model
    manufacturer: str | None
    objective: ObjectiveInfo | None
    acquisition_date: datetime | None
    acquisition_software: str | None
    ome_xml: str
    ome_source: str  # "reader" (the reader's OME) or "microfair" (built from the fields above)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def extract_metadata(path_or_image: str | Path | BioImage) -> ImageMetadata:
    """Read the technical metadata of a file (or of an image already opened)."""
    if isinstance(path_or_image, BioImage):
        img = path_or_image
        file_name = Path(str(getattr(img.reader, "_path", "") or "image")).name
    else:
        file_name = Path(path_or_image).name
        img = open_image(path_or_image)
    reader, reader_version = reader_identity(img)
    notes: list[str] = []
    ome = _reader_ome(img, notes)
    selected = img.current_scene
    scenes = []
    try:
        for index, name in enumerate(img.scenes):
            img.set_scene(index)
            scenes.append(_scene(img, index, name, ome))
    finally:
        img.set_scene(selected)
    instrument, manufacturer, objective = _instrument(ome)
    raw = img.metadata if _has_raw(img) else None
    if not instrument and isinstance(raw, ElementTree.Element):
        # Zeiss ZEN names the stand in its own XML; bioio-czi's OME leaves Model empty
        stand = raw.find(".//Information/Instrument/Microscopes/Microscope")
        instrument = (stand.get("Name") or "").strip() or None if stand is not None else None
    software = _software(raw)
    dates = [s.acquisition_date for s in scenes if s.acquisition_date is not None]
    ome_xml, source = _ome_xml(img, ome)
    if ome_xml is None:
        ome_xml = _built_ome(scenes, instrument, manufacturer, objective).to_xml()
        source = "microfair"
        notes.append("the reader gives no OME metadata; OME-XML built by microfair from the fields above")
    meta = ImageMetadata(
        file_name=file_name, reader=reader, reader_version=reader_version, scenes=scenes,
        instrument=instrument, manufacturer=manufacturer, objective=objective,
        acquisition_date=min(dates) if dates else None, acquisition_software=software,
        ome_xml=ome_xml, ome_source=source, notes=notes,
    )
    log.info("%s: metadata read with %s %s (%d scene(s))", file_name, reader, reader_version, len(scenes))
    return meta


def _reader_ome(img: BioImage, notes: list[str]) -> OME | None:
    try:
        ome = img.ome_metadata
    except NotImplementedError:
        return None
    except Exception as err:  # noqa: BLE001 - a broken OME conversion must not stop ingest
        notes.append(f"the reader's OME metadata could not be built: {err}")
        return None
    return ome if isinstance(ome, OME) else None


def _has_raw(img: BioImage) -> bool:
    try:
        return img.metadata is not None
    except Exception:  # noqa: BLE001 - raw metadata is optional
        return False


def _software(raw: Any) -> str | None:
    if not isinstance(raw, ElementTree.Element):
        return None
    app = raw.find(".//Information/Application")
    if app is None:
        return None
    words = [(app.findtext(k) or "").strip() for k in ("Name", "Version")]
    return " ".join(w for w in words if w) or None


def _scene(img: BioImage, index: int, name: str, ome: OME | None) -> SceneMetadata:
    dims = img.dims
    sizes = {d: int(getattr(dims, d)) for d in dims.order}
    pps = img.physical_pixel_sizes
    ome_image = ome.images[index] if ome is not None and index < len(ome.images) else None
    ome_channels = list(ome_image.pixels.channels) if ome_image is not None else []
    names = list(img.channel_names or [])
    channels = []
    for c in range(sizes.get("C", 1)):
        oc = ome_channels[c] if c < len(ome_channels) else None
        channel_name = str(names[c]) if c < len(names) else (oc.name if oc is not None else None)
        channels.append(ChannelInfo(
            name=channel_name,
            emission_nm=_num(oc.emission_wavelength) if oc is not None else None,
            excitation_nm=_num(oc.excitation_wavelength) if oc is not None else None,
            fluor=(oc.fluor or None) if oc is not None else None,
        ))
    interval = img.time_interval
    step = interval.total_seconds() if interval is not None else None
    if step is None and ome_image is not None and ome_image.pixels.time_increment:
        step = float(ome_image.pixels.time_increment)
    original = getattr(img.reader, "original_axes", None)
    if not isinstance(original, dict):
        original = dict(img.reader.xarray_dask_data.attrs.get("original_axes", {}) or {})
    return SceneMetadata(
        index=index, name=str(name), dims=sizes, dtype=str(img.dtype),
        pixel_size_um={"Z": _size(pps.Z), "Y": _size(pps.Y), "X": _size(pps.X)},
        channels=channels, time_increment_s=step or None,
        acquisition_date=ome_image.acquisition_date if ome_image is not None else None,
        original_axes=original,
        significant_bits=ome_image.pixels.significant_bits if ome_image is not None else None,
    )


def _num(value: Any) -> float | None:
    return float(value) if value is not None else None


def _size(value: float | None) -> float | None:
    """A zero or missing physical size means 'unknown' (bioio-czi gives 0.0 for 2-D files)."""
    return float(value) if value else None


def _instrument(ome: OME | None) -> tuple[str | None, str | None, ObjectiveInfo | None]:
    if ome is None or not ome.instruments:
        return None, None, None
    inst = ome.instruments[0]
    model = (inst.microscope.model or "").strip() or None if inst.microscope else None
    maker = (inst.microscope.manufacturer or "").strip() or None if inst.microscope else None
    wanted = None
    if ome.images and ome.images[0].objective_settings is not None:
        wanted = ome.images[0].objective_settings.id
    chosen = next((o for o in inst.objectives if o.id == wanted), None)
    chosen = chosen or (inst.objectives[0] if inst.objectives else None)
    objective = None
    if chosen is not None:
        immersion = chosen.immersion.value if chosen.immersion is not None else None
        objective = ObjectiveInfo(
            model=(chosen.model or "").strip() or None, numerical_aperture=_num(chosen.lens_na),
            magnification=_num(chosen.nominal_magnification), immersion=immersion,
        )
    return model, maker, objective


def _ome_xml(img: BioImage, ome: OME | None) -> tuple[str | None, str]:
    raw = getattr(img.reader, "ome_xml", None)  # e.g. Bio-Formats: the reader's own OME-XML
    if isinstance(raw, str) and raw.strip():
        return raw, "reader"
    if ome is not None:
        try:
            return ome.to_xml(), "reader"
        except Exception as err:  # noqa: BLE001
            log.warning("OME metadata of the reader could not be serialised: %s", err)
    return None, "microfair"


def _built_ome(scenes: list[SceneMetadata], instrument: str | None, manufacturer: str | None,
               objective: ObjectiveInfo | None) -> OME:
    from microfair.imaging.ome_build import ObjectiveSpec

    specs = [
        ImageSpec(
            name=s.name, sizes=s.dims, dtype=s.dtype,
            pixel_size_um=(s.pixel_size_um["Z"], s.pixel_size_um["Y"], s.pixel_size_um["X"]),
            time_increment_s=s.time_increment_s,
            channels=[ChannelSpec(c.name, c.emission_nm, c.excitation_nm) for c in s.channels],
            acquisition_date=s.acquisition_date, original_axes=s.original_axes,
        )
        for s in scenes
    ]
    return build_ome(
        specs, microscope_model=instrument, manufacturer=manufacturer,
        objective=ObjectiveSpec(**vars(objective)) if objective is not None else None,
    )
