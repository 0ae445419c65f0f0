"""Nyquist sampling check: is each axis sampled as finely as the optics resolve, and not far finer?

Formulas of Scientific Volume Imaging (SVI wiki "Nyquist rate", https://svi.nl/NyquistRate, and the
FAQ https://svi.nl/NyquistBandwidthImpFaq), with ``alpha = asin(NA / n)`` the half-aperture angle and
``n`` the refractive index of the immersion medium:

* widefield (and light-sheet detection, and an unknown modality):
  ``dx = lambda_em / (4 n sin alpha)``, ``dz = lambda_em / (2 n (1 - cos alpha))``;
* confocal (point or spinning-disk) and multi-photon: the bandwidth doubles, so
  ``dx = lambda_ex / (8 n sin alpha)``, ``dz = lambda_ex / (4 n (1 - cos alpha))``.

The ratio per channel and axis is ``pixel size / Nyquist distance``: above 1 the image is
*under-sampled* (details the objective transmits are lost, aliasing); below
``1 / qc.nyquist_oversampling_factor`` it is *over-sampled* beyond what the facility accepts (more
bytes and more light dose for no more information). Missing metadata gives "not computable",
naming what is missing; contradictory metadata (NA above the immersion index, a negative pixel size,
emission shorter than excitation in one-photon imaging) gives a QC flag. Nothing here raises on bad
metadata.

The inputs come from the dataset's OME-XML, read leniently with ElementTree: ome_types refuses the
very values (a negative ``PhysicalSizeZ``) that must become flags here.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from microfair.config.core import QcThresholds
from microfair.qc.ome_optics import ChannelOptics, SceneOptics, scene_optics

log = logging.getLogger(__name__)

METHOD = ("SVI Nyquist rate (svi.nl/NyquistRate): widefield dx = l_em/(4 n sin a), dz = l_em/(2 n (1 - cos a)); "
          "confocal and multi-photon dx = l_ex/(8 n sin a), dz = l_ex/(4 n (1 - cos a)); a = asin(NA/n)")

#: Refractive index of the immersion media named by OME ``Objective@Immersion`` (SVI's values).
IMMERSION_INDEX = {"oil": 1.515, "water": 1.333, "waterdipping": 1.333, "glycerol": 1.474, "air": 1.0}

_CONFOCAL = {"laserscanningconfocalmicroscopy", "spinningdiskconfocal", "slitscanconfocal", "sweptfieldconfocal"}
_WIDEFIELD = {"widefield", "totalinternalreflection", "tirf", "brightfield", "fluorescencelifetime",
              "spectralimaging"}
_MULTIPHOTON = {"multiphotonmicroscopy", "secondharmonicgenerationimaging"}
_LIGHT_SHEET = {"spim", "lightsheet", "selectiveplaneillumination"}
_SUPER_RESOLUTION = {"sted", "palm", "storm", "structuredillumination", "singlemoleculeimaging", "4pi",
                     "nearfieldscanningopticalmicroscopy"}


# --------------------------------------------------------------------------- the rule


def modality_of(scene: SceneOptics, channel: ChannelOptics) -> tuple[str, str]:
    """(modality, how it is known): widefield, confocal, multiphoton, light_sheet, super_resolution, unknown."""
    mode = (channel.mode or "").replace("-", "").replace("_", "").replace(" ", "").lower()
    if mode in _CONFOCAL:
        return "confocal", f"AcquisitionMode {channel.mode}"
    if mode in _MULTIPHOTON or (channel.illumination or "").lower() == "nonlinear":
        return "multiphoton", f"AcquisitionMode {channel.mode}" if mode else "IlluminationType NonLinear"
    if mode in _LIGHT_SHEET:
        return "light_sheet", f"AcquisitionMode {channel.mode}"
    if mode in _SUPER_RESOLUTION:
        return "super_resolution", f"AcquisitionMode {channel.mode}"
    if mode in _WIDEFIELD:
        return "widefield", f"AcquisitionMode {channel.mode}"
    if channel.pinhole_um:
        return "confocal", "a pinhole size is recorded"
    return "unknown", "no AcquisitionMode in the metadata"


def nyquist_nm(modality: str, wavelength_nm: float, na: float, n: float) -> tuple[float, float]:
    """(lateral, axial) Nyquist sampling distance in nm (SVI); ``modality`` widefield or confocal-like."""
    alpha = math.asin(na / n)
    lateral = wavelength_nm / (4 * n * math.sin(alpha))
    axial = wavelength_nm / (2 * n * (1 - math.cos(alpha)))
    if modality in ("confocal", "multiphoton"):
        return lateral / 2, axial / 2
    return lateral, axial


@dataclass
class AxisSampling:
    axis: str  # x, y, z
    direction: str  # lateral | axial
    pixel_nm: float | None
    nyquist_nm: float | None
    ratio: float | None  # pixel / Nyquist
    verdict: str  # ok | under-sampled | over-sampled | not computable | not applicable
    reason: str | None = None


@dataclass
class ChannelSampling:
    index: int
    name: str
    modality: str
    modality_source: str
    wavelength_nm: float | None
    wavelength_kind: str | None  # emission | excitation
    axes: list[AxisSampling] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # needed for both axes
    axial_missing: list[str] = field(default_factory=list)  # needed for the axial distance only
    contradictions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def computable(self) -> bool:
        return not self.missing and not self.contradictions


def _refractive_index(scene: SceneOptics, missing: list[str], notes: list[str]) -> float | None:
    if scene.refractive_index is not None and scene.refractive_index > 0:
        return scene.refractive_index
    if scene.immersion:
        key = scene.immersion.replace(" ", "").lower()
        if key in IMMERSION_INDEX:
            notes.append(f"n = {IMMERSION_INDEX[key]} for {scene.immersion} immersion (no RefractiveIndex recorded)")
            return IMMERSION_INDEX[key]
        missing.append(f"immersion refractive index ({scene.immersion!r} immersion has no standard index)")
        return None
    missing.append("objective immersion (refractive index)")
    return None


def _channel(scene: SceneOptics, ch: ChannelOptics, factor: float, tolerance: float) -> ChannelSampling:
    modality, source = modality_of(scene, ch)
    out = ChannelSampling(ch.index, ch.name, modality, source, None, None)
    missing, contra, notes = out.missing, out.contradictions, out.notes
    if modality == "super_resolution":
        missing.append(f"a diffraction-limited modality ({ch.mode} is super-resolution: the objective's Nyquist "
                       "rate does not bound its sampling)")
    if scene.na is None:
        missing.append("objective NA")
    elif scene.na <= 0:
        contra.append(f"objective NA {scene.na:g} is not positive")
    n = _refractive_index(scene, out.axial_missing, notes)  # n sin(alpha) = NA: lateral needs no n
    if scene.na is not None and n is not None and scene.na > 0 and scene.na >= n:
        contra.append(f"objective NA {scene.na:g} is not below the immersion refractive index {n:g}"
                      + (f" ({scene.immersion})" if scene.immersion else "") + ": no objective can do that")
    em, ex = ch.emission_nm, ch.excitation_nm
    for what, v in (("emission", em), ("excitation", ex)):
        if v is not None and v <= 0:
            contra.append(f"{what} wavelength {v:g} nm is not positive")
    one_photon = modality != "multiphoton"
    if one_photon and em is not None and ex is not None and 0 < em < ex:
        contra.append(f"emission wavelength {em:g} nm is shorter than excitation {ex:g} nm (impossible in "
                      "one-photon fluorescence; multi-photon would say so in AcquisitionMode)")
    if modality in ("confocal", "multiphoton") and (ch.illumination or "").lower() != "transmitted":
        if ex is not None and ex > 0:
            out.wavelength_nm, out.wavelength_kind = ex, "excitation"
        elif modality == "confocal" and em is not None and em > 0:
            out.wavelength_nm, out.wavelength_kind = em, "emission"
            notes.append("excitation wavelength missing: the emission wavelength stands in for it (SVI's "
                         "equal-wavelength case), so the Nyquist distance is a little too generous")
        else:
            missing.append("excitation wavelength")
    elif em is not None and em > 0:
        out.wavelength_nm, out.wavelength_kind = em, "emission"
    elif (ch.illumination or "").lower() == "transmitted":
        missing.append("emission wavelength (a transmitted-light channel: its Nyquist rate needs the illumination "
                       "wavelength and the condenser NA, which are not recorded)")
    else:
        missing.append("emission wavelength")
    if modality == "unknown":
        notes.append("modality not recorded: widefield assumed (the most generous Nyquist distance: a confocal "
                     "acquisition would need half of it), so over-sampling is flagged only beyond twice the factor")
    if modality == "light_sheet":
        notes.append("light sheet: the axial Nyquist distance is the detection objective's widefield one (the sheet "
                     "thickness is not in the metadata), so axial over-sampling is not judged")
    computable = not missing and not contra
    lateral = axial = None
    if computable:
        rule = "widefield" if modality in ("unknown", "light_sheet") else modality
        if n is not None:
            lateral, axial = nyquist_nm(rule, out.wavelength_nm, scene.na, n)  # type: ignore[arg-type]
        else:  # without n only the lateral distance: lambda / (4 NA), halved for confocal
            halved = 2 if rule in ("confocal", "multiphoton") else 1
            lateral = out.wavelength_nm / (4 * scene.na) / halved  # type: ignore[operator]
    for axis in "xyz":
        direction = "axial" if axis in scene.axial_axes else "lateral"
        pixel = scene.pixel_nm.get(axis)
        target = axial if direction == "axial" else lateral
        a = AxisSampling(axis, direction, pixel, _round(target), None, "not computable")
        if scene.sizes.get(axis, 1) <= 1 and pixel is None:
            a.verdict, a.reason = "not applicable", f"a single {axis} sample"
        elif pixel is None:
            a.reason = f"{axis} pixel size missing"
        elif pixel <= 0:
            contra.append(f"{axis} pixel size {pixel / 1000:g} µm is not positive")
            a.reason = f"{axis} pixel size is not positive"
        elif target is None:
            lack = missing + (out.axial_missing if direction == "axial" else [])
            a.reason = "not computable: missing " + ", ".join(lack) if lack else "contradictory metadata"
        else:
            a.ratio = round(pixel / target, 4)
            if a.ratio > tolerance:
                a.verdict = "under-sampled"
            elif a.ratio < 1 / (2 * factor if modality == "unknown" else factor) and not (
                    direction == "axial" and modality == "light_sheet"):
                a.verdict = "over-sampled"
            else:
                a.verdict = "ok"
        out.axes.append(a)
    return out


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 2)


def _sentence(scene: SceneOptics, ch: ChannelSampling, a: AxisSampling, factor: float) -> str:
    where = f"scene {scene.index} channel {ch.index} ({ch.name}), {a.axis} ({a.direction})"
    step = "pixel" if a.direction == "lateral" else "step"
    how = "more zoom or magnification" if a.direction == "lateral" else "a finer z step"
    modality = {"unknown": "widefield (assumed)", "light_sheet": "light-sheet detection"}.get(ch.modality, ch.modality)
    assert a.pixel_nm is not None and a.nyquist_nm is not None and a.ratio is not None
    if a.verdict == "under-sampled":
        return (f"{where}: the {step} of {a.pixel_nm:.0f} nm is {a.ratio:.2f}× the Nyquist distance "
                f"{a.nyquist_nm:.0f} nm for {modality} at {ch.wavelength_nm:g} nm {ch.wavelength_kind}: the image "
                f"is under-sampled, so fine detail the objective resolves is lost or aliased; acquire with a {step} "
                f"of at most {a.nyquist_nm:.0f} nm ({how})")
    return (f"{where}: the {step} of {a.pixel_nm:.0f} nm is {1 / a.ratio:.1f}× finer than the Nyquist distance "
            f"{a.nyquist_nm:.0f} nm (more than the {factor:g}× allowed): the data is over-sampled, about "
            f"{1 / a.ratio:.1f}× more bytes (and light dose) along {a.axis} for no extra detail; "
            f"a {step} of up to {a.nyquist_nm:.0f} nm captures everything")


def _fill_pixel_sizes(scenes: list[SceneOptics], image_metadata: dict[str, Any] | None) -> None:
    """Pixel sizes the OME-XML lacks, from the ``image_metadata`` record (the reader's own values).

    ome_types drops what it cannot validate (a negative z step), while the reader still reports it.
    """
    meta_scenes = (image_metadata or {}).get("scenes") or []
    for scene in scenes:
        if scene.index >= len(meta_scenes):
            continue
        sizes_um = meta_scenes[scene.index].get("pixel_size_um") or {}
        for axis in "xyz":
            value = sizes_um.get(axis.upper())
            if scene.pixel_nm.get(axis) is None and isinstance(value, (int, float)) and math.isfinite(value):
                scene.pixel_nm[axis] = float(value) * 1000


def nyquist_report(ome_xml: str | None, thresholds: QcThresholds | None = None, *,
                   image_metadata: dict[str, Any] | None = None, uid: str | None = None) -> dict[str, Any]:
    """The Nyquist section of the QC report: per scene, channel and axis; ``flags`` in QcFlag's shape.

    ``image_metadata``: the validate stage's record, for pixel sizes the OME-XML does not carry.
    Never raises on bad metadata: an unreadable OME-XML gives a report that says so.
    """
    t = thresholds or QcThresholds()
    factor, tolerance = t.nyquist_oversampling_factor, t.nyquist_undersampling_tolerance
    report: dict[str, Any] = {"method": METHOD, "oversampling_factor": factor,
                              "undersampling_tolerance": tolerance, "scenes": [], "flags": []}
    if not ome_xml or not ome_xml.strip():
        report["not_computable"] = "not computable: the dataset has no OME metadata"
        return report
    try:
        scenes = scene_optics(ome_xml)
    except ValueError as exc:
        report["not_computable"] = f"not computable: {exc}"
        return report
    _fill_pixel_sizes(scenes, image_metadata)
    flags = report["flags"]
    for scene in scenes:
        entry: dict[str, Any] = {"index": scene.index, "name": scene.name, "na": scene.na,
                                 "immersion": scene.immersion, "refractive_index": scene.refractive_index,
                                 "pixel_nm": scene.pixel_nm, "axial_axes": sorted(scene.axial_axes),
                                 "problems": scene.problems, "channels": []}
        for ch in scene.channels:
            cs = _channel(scene, ch, factor, tolerance)
            body = asdict(cs)
            body["computable"] = cs.computable
            if cs.missing:
                body["summary"] = "not computable: missing " + ", ".join(dict.fromkeys(cs.missing + cs.axial_missing))
            elif cs.axial_missing:
                body["summary"] = "axial not computable: missing " + ", ".join(dict.fromkeys(cs.axial_missing))
            entry["channels"].append(body)
            for problem in dict.fromkeys(cs.contradictions):
                flags.append({"metric": "nyquist_metadata", "value": None, "threshold": None,
                              "reason": f"scene {scene.index} channel {ch.index} ({ch.name}): contradictory "
                                        f"metadata, Nyquist sampling not judged: {problem}",
                              "scene": scene.index, "channel": ch.index})
            for a in cs.axes:
                if a.verdict == "under-sampled":
                    flags.append({"metric": "nyquist_undersampling", "value": a.ratio, "threshold": tolerance,
                                  "reason": _sentence(scene, cs, a, factor), "scene": scene.index,
                                  "channel": ch.index})
                elif a.verdict == "over-sampled":
                    flags.append({"metric": "nyquist_oversampling", "value": a.ratio,
                                  "threshold": round(1 / factor, 6), "reason": _sentence(scene, cs, a, factor),
                                  "scene": scene.index, "channel": ch.index})
        report["scenes"].append(entry)
    log.info("%s: Nyquist check of %d scene(s): %d flag(s)", uid or "dataset", len(scenes), len(flags))
    return report


NYQUIST_METRICS = ("nyquist_undersampling", "nyquist_oversampling", "nyquist_metadata")


def with_nyquist(report: dict[str, Any], ome_xml: str | None, thresholds: QcThresholds | None = None, *,
                 image_metadata: dict[str, Any] | None = None, uid: str | None = None) -> dict[str, Any]:
    """Put the Nyquist section and its flags into a QC report dict (in place; earlier Nyquist flags replaced)."""
    try:
        section = nyquist_report(ome_xml, thresholds, image_metadata=image_metadata, uid=uid)
    except Exception as exc:  # noqa: BLE001 - the Nyquist check must never stop QC
        log.exception("%s: Nyquist check failed", uid)
        section = {"method": METHOD, "scenes": [], "flags": [], "not_computable": f"not computable: {exc}"}
    flags = [f for f in report.get("flags", []) if f.get("metric") not in NYQUIST_METRICS]
    report["flags"] = flags + section["flags"]
    report["passed"] = not report["flags"]
    report["nyquist"] = section
    return report


def nyquist_of_target(path: Path, img: Any = None) -> tuple[str | None, dict[str, Any] | None]:
    """(OME-XML, image metadata) of a file opened as ``img``, or of an OME-Zarr folder (``microfair qc``)."""
    if img is None:
        xml_file = Path(path) / "OME" / "METADATA.ome.xml"
        return (xml_file.read_text(encoding="utf-8", errors="replace") if xml_file.is_file() else None), None
    from microfair.metadata import extract_metadata

    try:
        meta = extract_metadata(img)
    except Exception:  # noqa: BLE001 - no metadata: the Nyquist section says "not computable"
        log.exception("%s: metadata unreadable for the Nyquist check", Path(path).name)
        return None, None
    return meta.ome_xml, meta.to_dict()


def attach_nyquist(qc_json: Path, ome_xml_file: Path, thresholds: QcThresholds | None = None, *,
                   image_metadata: dict[str, Any] | None = None, uid: str | None = None) -> dict[str, Any]:
    """Add the Nyquist section and its flags to ``qc.json`` (rewritten atomically); returns the report.

    Idempotent: earlier Nyquist flags are replaced, and ``passed`` follows the flags.
    """
    report = json.loads(Path(qc_json).read_text(encoding="utf-8"))
    xml = Path(ome_xml_file).read_text(encoding="utf-8", errors="replace") if Path(ome_xml_file).is_file() else None
    with_nyquist(report, xml, thresholds, image_metadata=image_metadata, uid=uid)
    tmp = Path(qc_json).with_name(f".{Path(qc_json).name}.tmp")
    tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, qc_json)
    return report


__all__ = ["ChannelOptics", "SceneOptics", "attach_nyquist", "modality_of", "nyquist_nm", "nyquist_of_target",
           "nyquist_report", "scene_optics", "with_nyquist"]
