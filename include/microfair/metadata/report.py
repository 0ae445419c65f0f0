"""``metadata_report.json``: which metadata of the source survived the conversion, and where.

For each image and channel, the fields a facility cares about (physical sizes, time increment,
objective, NA, immersion, acquisition date, instrument; channel names, emission and excitation
wavelengths, detector) are read from the source (its OME-XML, else microfair's reading of the
file), then looked up again in each place they should reach:

* ``ngff``: the NGFF attributes of the written Zarr (axis scales and units, omero labels), read back
  from the files;
* ``zarr_ome_xml``: the OME-XML stored inside the Zarr (``OME/METADATA.ome.xml``), parsed again;
* ``rembi`` and ``dublin_core``: the ledger records built at validation.

Each (field, place) gets a status: ``carried`` (same value), ``differs`` (another value),
``missing`` (the place has a field for it but does not hold it) or ``no field`` (the place cannot
hold it, e.g. NGFF has no wavelength), with the reason. A field is *lost* when no place carried it.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from microfair.metadata.report_read import (
    CHANNEL_FIELDS,
    IMAGE_FIELDS,
    ImageFields,
    NgffImage,
    merge_reader,
    ngff_images,
    ome_images,
    parse_ome,
    zarr_ome_xml,
)

log = logging.getLogger(__name__)

RECORD_KIND = "metadata_report"
FILE_NAME = "metadata_report.json"
TARGETS = {
    "ngff": "NGFF image metadata (multiscales, omero)",
    "zarr_ome_xml": "OME-XML inside the Zarr (OME/METADATA.ome.xml)",
    "rembi": "REMBI record",
    "dublin_core": "Dublin Core record",
}
LABELS = {
    "physical_size_x": ("Physical size X", "µm"), "physical_size_y": ("Physical size Y", "µm"),
    "physical_size_z": ("Physical size Z", "µm"), "time_increment": ("Time increment", "s"),
    "objective": ("Objective", None), "numerical_aperture": ("Numerical aperture", None),
    "immersion": ("Immersion", None), "acquisition_date": ("Acquisition date", None),
    "instrument": ("Instrument", None), "name": ("Channel name", None),
    "emission_wavelength": ("Emission wavelength", "nm"), "excitation_wavelength": ("Excitation wavelength", "nm"),
    "detector": ("Detector", None),
}
NGFF_AXIS = {"physical_size_x": "x", "physical_size_y": "y", "physical_size_z": "z", "time_increment": "t"}
REMBI_SIZE = {"physical_size_x": "X", "physical_size_y": "Y", "physical_size_z": "Z"}
NO_NGFF = "NGFF image metadata has no field for it (multiscales and omero hold axis scales, units and channel labels)"
NO_DC = "Dublin Core has no element for technical image metadata"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-5, abs_tol=1e-12)
    return " ".join(str(a).split()).casefold() == " ".join(str(b).split()).casefold()


def _verdict(source: Any, value: Any, *, missing: str) -> dict[str, Any]:
    if value is None:
        return {"status": "missing", "reason": missing}
    if _same(source, value):
        return {"status": "carried", "value": value}
    return {"status": "differs", "value": value, "reason": f"holds {value!r}, the source {source!r}"}


def _no_field(reason: str) -> dict[str, Any]:
    return {"status": "no field", "reason": reason}


def _ngff(name: str, source: Any, image: NgffImage | None, channel: int | None, n_channels: int) -> dict[str, Any]:
    if image is None:
        return {"status": "missing", "reason": "the Zarr has no image group for this image"}
    if name in NGFF_AXIS:
        axis = NGFF_AXIS[name]
        return _verdict(source, image.scale.get(axis), missing=(
            f"the Zarr's {axis} axis has no unit (scale 1): the reader gave the conversion no value"))
    if name == "name" and channel is not None:
        labels = image.labels
        per = len(labels) // n_channels if n_channels and len(labels) % n_channels == 0 else 0
        if not per:
            return {"status": "missing", "reason": f"the Zarr has {len(labels)} channel labels, the source "
                                                   f"{n_channels} channels"}
        mine = labels[channel * per:(channel + 1) * per]
        if per == 1:
            return _verdict(source, mine[0], missing="no omero label")
        if all(lab.rsplit(" ", 1)[0] == str(source) for lab in mine):  # "<name> red", "<name> green", ...
            return {"status": "carried", "value": mine}
        return _no_field(f"an RGB channel is stored as {per} channels named by colour ({', '.join(mine)})")
    return _no_field(NO_NGFF)


def _zarr_ome(name: str, source: Any, origin: str, image: ImageFields | None, channel: int | None,
              problem: str | None) -> dict[str, Any]:
    if image is None:
        return {"status": "missing", "reason": problem or "the Zarr's OME-XML has no such image"}
    if channel is None:
        value = image.values.get(name)
    else:
        value = image.channels[channel].get(name) if channel < len(image.channels) else None
    reason = ("the source's OME-XML does not hold it either (the value comes from the reader)"
              if origin == "reader" else "the Zarr's OME-XML does not hold it")
    return _verdict(source, value, missing=reason)


def _rembi(name: str, source: Any, index: int, channel: int | None, rembi: dict[str, Any] | None) -> dict[str, Any]:
    if not rembi:
        return {"status": "missing", "reason": "no REMBI record (validation did not build one)"}
    scenes = (rembi.get("image_data") or {}).get("scenes") or []
    scene = scenes[index] if index < len(scenes) else {}
    acq = rembi.get("image_acquisition") or {}
    params = acq.get("image_acquisition_parameters") or {}
    if name in REMBI_SIZE:
        value = (scene.get("pixel_voxel_size_um") or {}).get(REMBI_SIZE[name])
        return _verdict(source, value, missing="image_data.scenes[].pixel_voxel_size_um does not hold it")
    if name == "time_increment":
        return _verdict(source, scene.get("time_increment_s"), missing="image_data.scenes[].time_increment_s is empty")
    if name == "name" and channel is not None:
        names = scene.get("channels") or []
        return _verdict(source, names[channel] if channel < len(names) else None,
                        missing="image_data.scenes[].channels does not name it")
    if name in ("emission_wavelength", "excitation_wavelength"):
        if index > 0:
            return _no_field("REMBI's acquisition parameters list the first image's channels only")
        chans = params.get("channels") or []
        key = "emission_nm" if name == "emission_wavelength" else "excitation_nm"
        value = chans[channel].get(key) if channel is not None and channel < len(chans) else None
        return _verdict(source, value, missing=f"image_acquisition_parameters.channels[].{key} is empty")
    if name == "detector":
        return _no_field("microfair's REMBI record has no detector field")
    value = acq.get("imaging_instrument") if name == "instrument" else params.get(name)
    if index > 0 and (value is None or not _same(source, value)):
        return _no_field("REMBI holds one value per dataset (the first image's)")
    if name == "instrument" and value is not None and str(source).casefold() in str(value).casefold():
        return {"status": "carried", "value": value}
    where = "image_acquisition.imaging_instrument" if name == "instrument" else \
        f"image_acquisition.image_acquisition_parameters.{name}"
    return _verdict(source, value, missing=f"{where} is empty")


def _dublin_core(name: str, source: Any, dc: dict[str, Any] | None) -> dict[str, Any]:
    if name == "acquisition_date":
        if not dc:
            return {"status": "missing", "reason": "no Dublin Core record"}
        return _verdict(str(source)[:10], dc.get("date"), missing="date is empty")
    if name == "instrument":
        text = (dc or {}).get("source")
        if text and str(source).casefold() in str(text).casefold():
            return {"status": "carried", "value": text}
        return _no_field("Dublin Core source names the facility's microscope, not the instrument model")
    return _no_field(NO_DC)


def _row(name: str, source: Any, origin: str, targets: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    label, unit = LABELS[name]
    row: dict[str, Any] = {"field": name, "label": label, "unit": unit, "source": source}
    if source is None:
        row["status"] = "not in source"
        return row
    assert targets is not None
    row["from"] = origin
    row["targets"] = targets
    row["kept"] = any(t["status"] == "carried" for t in targets.values())
    return row


def build_metadata_report(*, uid: str, ome_xml: str | None, image_metadata: dict[str, Any] | None, zarr_path: Path,
                          rembi: dict[str, Any] | None, dublin_core: dict[str, Any] | None) -> dict[str, Any]:
    """The report as a JSON-serialisable dict (see the module docstring)."""
    notes: list[str] = []
    source_ome, why = parse_ome(ome_xml)
    if why:
        notes.append(f"source: {why}; values from microfair's reading of the file only")
    images = merge_reader(ome_images(source_ome), image_metadata)
    version, ngff, ngff_problem = ngff_images(zarr_path)
    if ngff_problem:
        notes.append(ngff_problem)
    stored = zarr_ome_xml(zarr_path)
    zarr_ome, zarr_problem = parse_ome(stored)
    zarr_imgs = ome_images(zarr_ome)
    if stored is None:
        zarr_problem = "the Zarr has no OME/METADATA.ome.xml"
    if zarr_problem:
        notes.append(zarr_problem)
    out_images = []
    for i, img in enumerate(images):
        ng = ngff[i] if i < len(ngff) else None
        zi = zarr_imgs[i] if i < len(zarr_imgs) else None
        rows = []
        for name in IMAGE_FIELDS:
            src, origin = img.values.get(name), img.origin.get(name, "OME-XML")
            targets = None if src is None else {
                "ngff": _ngff(name, src, ng, None, len(img.channels)),
                "zarr_ome_xml": _zarr_ome(name, src, origin, zi, None, zarr_problem),
                "rembi": _rembi(name, src, i, None, rembi),
                "dublin_core": _dublin_core(name, src, dublin_core),
            }
            rows.append(_row(name, src, origin, targets))
        channels = []
        for c, ch in enumerate(img.channels):
            crow = []
            for name in CHANNEL_FIELDS:
                src, origin = ch.get(name), img.channel_origin.get(c, {}).get(name, "OME-XML")
                targets = None if src is None else {
                    "ngff": _ngff(name, src, ng, c, len(img.channels)),
                    "zarr_ome_xml": _zarr_ome(name, src, origin, zi, c, zarr_problem),
                    "rembi": _rembi(name, src, i, c, rembi),
                    "dublin_core": _dublin_core(name, src, dublin_core),
                }
                crow.append(_row(name, src, origin, targets))
            channels.append({"index": c, "name": ch.get("name"), "fields": crow})
        out_images.append({"index": i, "name": img.name, "fields": rows, "channels": channels})
    report = {
        "uid": uid,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": {k: (image_metadata or {}).get(k) for k in ("file_name", "reader", "reader_version", "ome_source")},
        "zarr": {"path": str(zarr_path), "ngff_version": version, "ome_xml": zarr_ome is not None},
        "targets": TARGETS,
        "images": out_images,
        "records_missing": {"rembi": (rembi or {}).get("missing"), "dublin_core": (dublin_core or {}).get("missing")},
        "notes": notes,
    }
    report["summary"] = summarise(out_images)
    return report


def _where(image: dict[str, Any], channel: dict[str, Any] | None) -> str:
    text = f"image {image['index']}" + (f" ({image['name']})" if image.get("name") else "")
    if channel is not None:
        text += f", channel {channel['index']}" + (f" ({channel['name']})" if channel.get("name") else "")
    return text


def summarise(images: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts per place and status, the fields no place carried (lost), and the values that differ or are
    missing (``problems``, one line each; ``problem_groups``, one entry per place, status and reason)."""
    counts = {t: {"carried": 0, "differs": 0, "missing": 0, "no field": 0} for t in TARGETS}
    read = not_in_source = 0
    lost, problems = [], []
    grouped: dict[tuple[str, str, str], list[str]] = {}
    for image in images:
        groups = [(None, image["fields"])] + [(ch, ch["fields"]) for ch in image["channels"]]
        for channel, rows in groups:
            for row in rows:
                if row.get("status") == "not in source":
                    not_in_source += 1
                    continue
                read += 1
                where = _where(image, channel)
                for target, verdict in row["targets"].items():
                    counts[target][verdict["status"]] += 1
                    if verdict["status"] in ("differs", "missing"):
                        problems.append(f"{where}: {row['label']} {verdict['status']} in {TARGETS[target]}: "
                                        f"{verdict['reason']}")
                        key = (target, verdict["status"], verdict["reason"])
                        grouped.setdefault(key, []).append(f"{where}: {row['label']}")
                if not row["kept"]:
                    lost.append({"where": where, "field": row["field"], "label": row["label"],
                                 "reasons": {t: v.get("reason") for t, v in row["targets"].items()}})
    return {"fields_read": read, "not_in_source": not_in_source, "kept": read - len(lost), "lost": lost,
            "by_target": counts, "problems": problems,
            "problem_groups": [{"target": t, "status": st, "reason": why, "fields": f}
                               for (t, st, why), f in grouped.items()]}


def record_metadata_report(ledger: Any, uid: str, reports: Path, zarr_path: Path, ome_xml: str | None) -> Path:
    """Build the report from the ledger's records and the written Zarr; write ``metadata_report.json``
    to ``reports``, store it as ledger record ``metadata_report`` and register the file.

    The report is a diagnosis of a conversion that already succeeded: if it cannot be built, the
    error is logged and recorded in its place (``{"error": ...}``), and the conversion stands.
    """
    from microfair.ingest import write_json

    try:
        report = build_metadata_report(
            uid=uid, ome_xml=ome_xml, image_metadata=ledger.get_record(uid, "image_metadata"), zarr_path=zarr_path,
            rembi=ledger.get_record(uid, "rembi"), dublin_core=ledger.get_record(uid, "dublin_core"),
        )
    except Exception as err:  # noqa: BLE001 - reported, never hidden, never fatal to the conversion
        log.exception("%s: the metadata report could not be built", uid)
        report = {"uid": uid, "error": f"the metadata report could not be built: {type(err).__name__}: {err}"}
        path = write_json(Path(reports) / FILE_NAME, report)
        ledger.put_record(uid, RECORD_KIND, report)
        return path
    path = write_json(Path(reports) / FILE_NAME, report)
    ledger.put_record(uid, RECORD_KIND, report)
    ledger.add_file(uid, "report", path)
    s = report["summary"]
    log.info("%s: metadata report: %d field(s) read from the source, %d kept, %d lost%s", uid, s["fields_read"],
             s["kept"], len(s["lost"]), f"; {len(s['problems'])} problem(s)" if s["problems"] else "")
    if s["problems"]:
        log.warning("%s: metadata not carried over as read: %s%s", uid, "; ".join(s["problems"][:5]),
                    f" (and {len(s['problems']) - 5} more, see {path})" if len(s["problems"]) > 5 else "")
    return path
