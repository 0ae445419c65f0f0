"""The records we publish for one acquisition: Dublin Core (15 elements) and REMBI.

Sources, in order of precedence: the user's sidecar, the file's own metadata, the name
tokens, the project defaults and the facility. A value none of them gives stays ``None``
and its key is listed in ``missing``: nothing is invented.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from microfair.config.core import FacilityInfo, ProjectDefaults
from microfair.metadata.extract import ImageMetadata
from microfair.metadata.sidecar import DC_ELEMENTS, Sidecar

NO_LINGUISTIC_CONTENT = "zxx"  # ISO 639-2: images carry no language


@dataclass(frozen=True)
class DatasetFacts:
    """What the ledger knows about the dataset (any object or mapping with these keys works)."""

    uid: str
    file_name: str
    size_bytes: int | None = None
    sha256: str | None = None
    raw_path: str | None = None
    microscope: str | None = None


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if obj is None:
        return default
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _first(*values: Any) -> Any:
    """The first value that is not None / empty."""
    for v in values:
        if v not in (None, "", [], {}):
            return v
    return None


def _missing(record: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in record.items():
        if key == "missing":
            continue
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.extend(_missing(value, path + "."))
        elif value in (None, "", []):
            out.append(path)
    return out


def _study_title(sidecar: Sidecar | None, defaults: ProjectDefaults | None) -> str | None:
    return _first(sidecar.study.title if sidecar else None, _get(defaults, "title"))


def build_dublin_core(
    meta: ImageMetadata,
    dataset: Any,
    tokens: Any = None,
    sidecar: Sidecar | None = None,
    defaults: ProjectDefaults | None = None,
    facility: FacilityInfo | None = None,
) -> dict[str, Any]:
    """All 15 Dublin Core elements (None when unknown) plus ``missing`` (their names)."""
    file_name = _first(_get(dataset, "file_name"), meta.file_name)
    study = sidecar.study if sidecar else None
    title = _study_title(sidecar, defaults)
    authors = [a.display_name for a in study.authors] if study else []
    creators = _first(authors, [_get(tokens, "creator")] if _get(tokens, "creator") else None,
                      [_get(defaults, "owner")] if _get(defaults, "owner") else None)
    keywords = list(_first(study.keywords if study else None, _get(defaults, "keywords")) or [])
    organism = _first(sidecar.biosample.organism if sidecar else None, _get(defaults, "organism"))
    method = _first(sidecar.image_acquisition.imaging_method if sidecar else None,
                    _get(defaults, "imaging_method"))
    subjects = list(dict.fromkeys([*keywords, *(s for s in (organism, method) if s)]))
    acquired = meta.acquisition_date.date().isoformat() if meta.acquisition_date else None
    token_date = _get(tokens, "date")
    publisher = None
    if facility is not None:
        publisher = ", ".join(p for p in (facility.name, facility.institution) if p)
    size = _get(dataset, "size_bytes")
    mime = mimetypes.guess_type(file_name or "")[0]
    label = (file_name or "").rsplit(".", 1)[-1].upper() if "." in (file_name or "") else None
    fmt = _first(mime, label and f"{label} ({meta.reader} {meta.reader_version or ''})".replace(" )", ")"))
    relation = []
    if _get(tokens, "project"):
        relation.append(f"project {_get(tokens, 'project')}")
    if study:
        relation.extend(study.publications)
    microscope = _first(_get(dataset, "microscope"), meta.instrument)
    record: dict[str, Any] = {
        "title": f"{title}: {file_name}" if title else file_name,
        "creator": creators,
        "subject": subjects or None,
        "description": _first(study.description if study else None, _get(defaults, "description")),
        "publisher": publisher,
        "contributor": [facility.name] if facility is not None else None,
        "date": _first(acquired, token_date.isoformat() if token_date else None),
        "type": "Image",  # DCMI Type Vocabulary
        "format": f"{fmt}; {size} bytes" if fmt and size is not None else fmt,
        "identifier": _get(dataset, "uid"),
        "source": f"{microscope}: {file_name}" if microscope else None,
        "language": NO_LINGUISTIC_CONTENT,
        "relation": relation or None,
        "coverage": None,
        "rights": _first(study.license if study else None, _get(defaults, "license")),
    }
    if sidecar is not None:
        record.update(sidecar.dublin_core)
    assert tuple(record) == DC_ELEMENTS
    record["missing"] = _missing(record)
    return record


def build_rembi(
    meta: ImageMetadata,
    dataset: Any,
    tokens: Any = None,
    sidecar: Sidecar | None = None,
    defaults: ProjectDefaults | None = None,
    facility: FacilityInfo | None = None,
) -> dict[str, Any]:
    """A REMBI record (BIA model v1.5 field names) plus ``missing`` (dotted paths)."""
    sc = sidecar or Sidecar()
    study, bio, spec, acq = sc.study, sc.biosample, sc.specimen, sc.image_acquisition
    description = _first(study.description, _get(defaults, "description"))
    record: dict[str, Any] = {
        "study": {
            "title": _study_title(sidecar, defaults),
            "description": description,
            "keywords": _first(study.keywords, _get(defaults, "keywords")),
            "authors": [a.model_dump(exclude_none=True) for a in study.authors] or None,
            "license": _first(study.license, _get(defaults, "license")),
            "funding": [f.model_dump(exclude_none=True) for f in study.funding] or None,
            "acknowledgements": study.acknowledgements,
            "publications": study.publications or None,
            "private_until_date": None,
        },
        "study_component": {
            "name": _first(getattr(tokens, "study", None) if tokens is not None else None,
                           _get(tokens, "project")),
            "description": _first(_get(tokens, "condition") and f"condition {_get(tokens, 'condition')}",
                                  description),
        },
        "biosample": {
            "organism": {
                "scientific_name": _first(bio.organism, _get(defaults, "organism")),
                "common_name": bio.common_name,
                "ncbi_taxon": _first(bio.ncbi_taxon, _get(defaults, "ncbi_taxon")),
            },
            "biological_entity": _first(bio.biological_entity, _get(defaults, "biological_entity")),
            "description": bio.description,
            "intrinsic_variables": bio.intrinsic_variables or None,
            "extrinsic_variables": bio.extrinsic_variables or None,
            "experimental_variables": bio.experimental_variables or None,
        },
        "specimen": {
            "sample_preparation": _first(spec.sample_preparation, _get(defaults, "sample_preparation")),
            "growth_protocol": spec.growth_protocol,
            "signal_contrast_mechanism": spec.signal_contrast_mechanism,
            "channel_content": spec.channel_content or None,
        },
        "image_acquisition": _image_acquisition(meta, dataset, acq, defaults),
        "image_data": _image_data(meta, dataset, tokens),
    }
    optional = {"study.acknowledgements", "study.publications", "study.private_until_date",
                "biosample.organism.common_name", "biosample.description"}
    record["missing"] = [m for m in _missing(record) if m not in optional
                         and not m.startswith(("biosample.intrinsic", "biosample.extrinsic"))]
    return record


def _image_acquisition(meta: ImageMetadata, dataset: Any, acq: Any, defaults: Any) -> dict[str, Any]:
    method = _first(acq.imaging_method, _get(defaults, "imaging_method"))
    instrument = _first(acq.instrument, meta.instrument)
    maker = meta.manufacturer
    described = " ".join(p for p in (maker, instrument) if p) or None
    obj = meta.objective
    params = {
        "objective": obj.model if obj else None,
        "numerical_aperture": obj.numerical_aperture if obj else None,
        "magnification": obj.magnification if obj else None,
        "immersion": obj.immersion if obj else None,
        "acquisition_date": meta.acquisition_date.isoformat() if meta.acquisition_date else None,
        "acquisition_software": meta.acquisition_software,
        "channels": [
            {k: v for k, v in vars(c).items() if v is not None} for c in meta.scenes[0].channels
        ] if meta.scenes else None,
        "notes": acq.parameters,
    }
    return {
        "imaging_method": {
            "value": method,
            "ontology_name": "Biological Imaging Methods Ontology (FBbi)" if acq.imaging_method_id else None,
            "ontology_id": acq.imaging_method_id,
        },
        "imaging_instrument": described,
        "microscope": _get(dataset, "microscope"),
        "image_acquisition_parameters": {k: v for k, v in params.items() if v not in (None, [])} or None,
    }


def _image_data(meta: ImageMetadata, dataset: Any, tokens: Any) -> dict[str, Any]:
    scenes = [
        {
            "name": s.name,
            "dimension_extents": dict(s.dims),
            "pixel_type": s.dtype,
            "pixel_voxel_size_um": {k: v for k, v in s.pixel_size_um.items() if v is not None} or None,
            "time_increment_s": s.time_increment_s,
            "channels": [c.name for c in s.channels],
            **({"original_axes": s.original_axes} if s.original_axes else {}),
        }
        for s in meta.scenes
    ]
    kind = _get(tokens, "kind")
    return {
        "type": {"RAW": "raw acquisition", "processed": "processed image"}.get(kind, kind),
        "file_name": _first(_get(dataset, "file_name"), meta.file_name),
        "format": f"{meta.reader} {meta.reader_version or ''}".strip(),
        "size_bytes": _get(dataset, "size_bytes"),
        "sha256": _get(dataset, "sha256"),
        "raw_path": _get(dataset, "raw_path"),
        "version": _get(tokens, "version"),
        "scenes": scenes,
        "ome_xml_source": meta.ome_source,
    }
