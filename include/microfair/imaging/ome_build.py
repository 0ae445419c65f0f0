"""Build a small, valid OME model (ome_types) from what a reader knows.

Used by our LIF reader plugin and by :mod:`microfair.metadata` when a reader offers no
OME metadata at all. One builder, so both places describe images the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from ome_types import OME
from ome_types.model import (
    Channel,
    Image,
    Instrument,
    InstrumentRef,
    MapAnnotation,
    Microscope,
    Objective,
    ObjectiveSettings,
    Pixels,
    StructuredAnnotations,
)
from ome_types.model import Map as OmeMap

#: numpy dtype name -> OME PixelType value
PIXEL_TYPES = {
    "bool": "bit", "int8": "int8", "int16": "int16", "int32": "int32", "uint8": "uint8",
    "uint16": "uint16", "uint32": "uint32", "float32": "float", "float64": "double",
    "complex64": "complex", "complex128": "double-complex",
}

#: OME Objective Immersion values, keyed by the abbreviations vendors write.
IMMERSIONS = {
    "oil": "Oil", "water": "Water", "w": "Water", "glyc": "Glycerol", "glycerol": "Glycerol",
    "air": "Air", "dry": "Air", "multi": "Multi", "wl": "WaterDipping", "sil": "Other",
}

ORIGINAL_AXES_NAMESPACE = "microfair.org/original-axes"


@dataclass
class ChannelSpec:
    name: str | None
    emission_nm: float | None = None
    excitation_nm: float | None = None


@dataclass
class ObjectiveSpec:
    model: str | None = None
    numerical_aperture: float | None = None
    magnification: float | None = None
    immersion: str | None = None  # free text; mapped to the OME vocabulary when it matches


@dataclass
class ImageSpec:
    """One image (scene) as our code sees it, in bioio's TCZYX[S] terms."""

    name: str
    sizes: dict[str, int]  # keys among T C Z Y X S
    dtype: str
    pixel_size_um: tuple[float | None, float | None, float | None] = (None, None, None)  # Z, Y, X
    time_increment_s: float | None = None
    channels: list[ChannelSpec] = field(default_factory=list)
    acquisition_date: datetime | None = None
    description: str | None = None
    original_axes: dict[str, str] = field(default_factory=dict)


def immersion_value(text: str | None) -> str | None:
    """Map a vendor's immersion word (``GLYC``, ``Water``…) to the OME vocabulary, else None."""
    if not text:
        return None
    return IMMERSIONS.get(text.strip().lower())


def build_ome(
    images: list[ImageSpec],
    *,
    microscope_model: str | None = None,
    manufacturer: str | None = None,
    objective: ObjectiveSpec | None = None,
    creator: str = "microfair",
) -> OME:
    """An OME model with one Image per spec and, when known, one Instrument."""
    instrument = None
    if microscope_model or manufacturer or objective is not None:
        objectives = []
        if objective is not None:
            objectives.append(Objective(
                id="Objective:0",
                model=objective.model,
                lens_na=objective.numerical_aperture,
                nominal_magnification=objective.magnification,
                immersion=immersion_value(objective.immersion),
            ))
        instrument = Instrument(
            id="Instrument:0",
            microscope=Microscope(model=microscope_model, manufacturer=manufacturer)
            if (microscope_model or manufacturer) else None,
            objectives=objectives,
        )
    annotations: list[MapAnnotation] = []
    ome_images = []
    for i, spec in enumerate(images):
        s = {k: int(spec.sizes.get(k, 1)) for k in "TCZYXS"}
        n_channels = s["C"]
        chans = list(spec.channels[:n_channels])
        chans += [ChannelSpec(None)] * (n_channels - len(chans))
        z, y, x = spec.pixel_size_um
        pixels = Pixels(
            id=f"Pixels:{i}",
            dimension_order="XYZCT",
            type=PIXEL_TYPES.get(np.dtype(spec.dtype).name, "uint16"),
            size_t=s["T"], size_c=n_channels * s["S"], size_z=s["Z"], size_y=s["Y"], size_x=s["X"],
            physical_size_x=_positive(x), physical_size_y=_positive(y), physical_size_z=_positive(z),
            time_increment=spec.time_increment_s,
            channels=[
                Channel(
                    id=f"Channel:{i}:{c}", name=ch.name, samples_per_pixel=s["S"],
                    emission_wavelength=ch.emission_nm, excitation_wavelength=ch.excitation_nm,
                )
                for c, ch in enumerate(chans)
            ],
            metadata_only=True,
        )
        ann_refs = []
        if spec.original_axes:
            ann_id = f"Annotation:{len(annotations)}"
            annotations.append(MapAnnotation(
                id=ann_id, namespace=ORIGINAL_AXES_NAMESPACE,
                value=OmeMap(ms=[OmeMap.M(k=k, value=v) for k, v in spec.original_axes.items()]),
            ))
            ann_refs.append({"id": ann_id})
        ome_images.append(Image(
            id=f"Image:{i}", name=spec.name, acquisition_date=spec.acquisition_date,
            description=spec.description, pixels=pixels,
            instrument_ref=InstrumentRef(id=instrument.id) if instrument is not None else None,
            objective_settings=ObjectiveSettings(id="Objective:0")
            if instrument is not None and instrument.objectives else None,
            annotation_refs=ann_refs,
        ))
    return OME(
        creator=creator,
        images=ome_images,
        instruments=[instrument] if instrument is not None else [],
        structured_annotations=StructuredAnnotations(map_annotations=annotations)
        if annotations else None,
    )


def _positive(value: float | None) -> float | None:
    """OME requires physical sizes > 0: zero or missing becomes None (unknown)."""
    return float(value) if value is not None and value > 0 else None
