"""The AVU scheme: how a dataset's ledger records become iRODS attribute-value-unit triples.

Every attribute lives in one namespace (``microfair`` by default, ``irods.avu_prefix``)::

    microfair.uid                               ledger identifier (GenQuery finds a dataset by it)
    microfair.role                              raw | zarr
    microfair.dc.<element>                      Dublin Core, one AVU per value (creator, subject… repeat)
    microfair.rembi.<module>.<field>[.<sub>]    REMBI record (study, study_component, biosample, specimen,
                                                image_acquisition, image_data), flattened with dots
    microfair.qc.<metric>                       QC summary; per channel the unit says where: ``s0c1`` =
                                                scene 0, channel 1
    microfair.checksum.sha256|blake3            ledger checksums (hex), microfair.size_bytes
    microfair.prov.microfair_version            provenance: our version,
    microfair.prov.software.<package>           the versions of the libraries that made the data,
    microfair.prov.param.<section>.<key>        and the conversion / QC parameters
    microfair.publication.<target>.pid          where it is deposited (bia, dataverse, zenodo): persistent
                                                identifier, landing_page, state (draft | published), version

Units: in a list of records (authors, channels, scenes) the unit holds the index (``#0``, ``#1``) so
that the values of one author stay together; physical units otherwise (``um``, ``s``).
iRODS forbids empty values, so absent values are left out, and caps values at 2700 bytes: longer
values are cut and end with ``…[truncated]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

MAX_VALUE_BYTES = 2700
TRUNCATED = "…[truncated]"
#: Keys of the records that are bookkeeping, not metadata.
SKIPPED_KEYS = frozenset({"missing", "ome_xml", "histogram", "per_plane", "thumbnails", "traceback"})
#: Python packages whose versions are recorded as provenance (those installed).
PROVENANCE_PACKAGES = ("bioio", "bioio-czi", "bioio-lif", "bioio-ome-tiff", "ome-zarr", "zarr", "tifffile",
                       "numpy", "dask", "python-irodsclient")


@dataclass(frozen=True, order=True)
class Avu:
    attribute: str
    value: str
    unit: str = ""


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = f"{value:.6g}"
    else:
        text = str(value)
    text = text.strip()
    if not text:
        return None
    raw = text.encode("utf-8")
    if len(raw) > MAX_VALUE_BYTES:
        keep = MAX_VALUE_BYTES - len(TRUNCATED.encode("utf-8"))
        text = raw[:keep].decode("utf-8", errors="ignore") + TRUNCATED
    return text


def flatten(prefix: str, value: Any, unit: str = "") -> list[Avu]:
    """Flatten a JSON-like value into AVUs under ``prefix`` (dicts nest with dots, lists repeat)."""
    out: list[Avu] = []
    if isinstance(value, Mapping):
        for key, sub in value.items():
            if key in SKIPPED_KEYS:
                continue
            out.extend(flatten(f"{prefix}.{key}", sub, unit))
    elif isinstance(value, (list, tuple)):
        if all(not isinstance(v, (Mapping, list, tuple)) for v in value):
            for v in value:
                text = _text(v)
                if text is not None:
                    out.append(Avu(prefix, text, unit))
        else:
            for i, v in enumerate(value):
                out.extend(flatten(prefix, v, f"{unit}#{i}" if unit else f"#{i}"))
    else:
        text = _text(value)
        if text is not None:
            out.append(Avu(prefix, text, unit))
    return out


def qc_avus(ns: str, qc: Mapping[str, Any] | None) -> list[Avu]:
    """The QC summary a data steward searches on; histograms and per-plane values stay in the report."""
    if not qc:
        return []
    out = flatten(f"{ns}.qc", {"passed": qc.get("passed"), "flags": len(qc.get("flags") or []),
                               "created": qc.get("created")})
    for f in qc.get("flags") or []:
        out.extend(flatten(f"{ns}.qc.flag", f.get("reason") or f.get("metric")))
    for s in qc.get("scenes") or []:
        for c in s.get("channels") or []:
            where = f"s{s.get('index', 0)}c{c.get('index', 0)}"
            metrics = {
                "channel": c.get("name"),
                "snr": (c.get("snr") or {}).get("value"),
                "saturation_fraction": (c.get("saturation") or {}).get("fraction"),
                "dynamic_range_fraction": c.get("dynamic_range_fraction"),
                "best_focus": (c.get("focus") or {}).get("best"),
                "best_plane": (c.get("focus") or {}).get("best_plane"),
            }
            out.extend(flatten(f"{ns}.qc", metrics, where))
    return out


def provenance_avus(ns: str, parameters: Mapping[str, Any] | None = None) -> list[Avu]:
    from importlib import metadata

    try:
        ours = metadata.version("microfair")
    except metadata.PackageNotFoundError:
        ours = "unknown"
    out = [Avu(f"{ns}.prov.microfair_version", ours)]
    for pkg in PROVENANCE_PACKAGES:
        try:
            out.append(Avu(f"{ns}.prov.software.{pkg}", metadata.version(pkg)))
        except metadata.PackageNotFoundError:
            continue
    if parameters:
        out.extend(flatten(f"{ns}.prov.param", parameters))
    return out


def eln_avus(ns: str, eln: Mapping[str, Any] | None) -> list[Avu]:
    """The notebook entry: ``<ns>.eln.url``, ``.system`` and, for eLabFTW, ``.entity_type`` and ``.entry_id``."""
    if not eln:
        return []
    return flatten(f"{ns}.eln", {k: eln.get(k) for k in ("url", "system", "entity_type", "entry_id")})


def dataset_avus(ns: str, dataset: Any, records: Mapping[str, Mapping[str, Any] | None],
                 parameters: Mapping[str, Any] | None = None, role: str = "raw") -> list[Avu]:
    """Every AVU of one dataset, sorted and without duplicates (what a re-run compares against)."""
    out = [Avu(f"{ns}.uid", dataset.uid), Avu(f"{ns}.role", role)]
    out += flatten(f"{ns}.project", dataset.project) + flatten(f"{ns}.study", dataset.study)
    out += flatten(f"{ns}.experiment", dataset.experiment) + flatten(f"{ns}.microscope", dataset.microscope)
    if role == "raw":
        out += flatten(f"{ns}.checksum.sha256", dataset.sha256) + flatten(f"{ns}.checksum.blake3", dataset.blake3)
        out += flatten(f"{ns}.size_bytes", dataset.size_bytes)
        out += flatten(f"{ns}.dc", records.get("dublin_core") or {})
        out += flatten(f"{ns}.rembi", records.get("rembi") or {})
        out += qc_avus(ns, records.get("qc"))
        out += eln_avus(ns, records.get("eln"))
        out += provenance_avus(ns, parameters)
        out += publication_avus(ns, records.get("publications"))
    return sorted(set(out))


def publication_avus(ns: str, publications: Mapping[str, Any] | None) -> list[Avu]:
    """``<ns>.publication.<target>.pid|landing_page|state|version``: where the dataset is deposited."""
    out: list[Avu] = []
    for target, pub in sorted((publications or {}).items()):
        for key in ("pid", "landing_page", "state", "version"):
            out += flatten(f"{ns}.publication.{target}.{key}", (pub or {}).get(key))
    return out


def in_namespace(ns: str, attributes: Iterable[str]) -> list[str]:
    return [a for a in attributes if a == ns or a.startswith(ns + ".")]
