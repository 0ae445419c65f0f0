"""metadata_report.json: what the source said, and what reached NGFF, the Zarr's OME-XML, REMBI and Dublin Core.

The expected values come from the OME built here (synthetic file) or from liffile (real file), and the NGFF
side is checked against the Zarr's attributes read with zarr-python, not through the report's own reader.
"""

from __future__ import annotations

import json
import re
import os
import shutil
from pathlib import Path

import liffile
import numpy as np
import pytest
import tifffile
import zarr
from ome_types import from_xml
from ome_types.model import (
    Detector,
    DetectorSettings,
    Instrument,
    InstrumentRef,
    Microscope,
    Objective,
    ObjectiveSettings,
)

from microfair.config.core import ConversionSettings
from microfair.convert import convert_to_zarr
from microfair.imaging import open_image
from microfair.metadata import extract_metadata
from microfair.metadata.records import build_dublin_core, build_rembi
from microfair.metadata.report import build_metadata_report

SETTINGS = ConversionSettings(chunk_xy=32, min_level_size=16)
WAVELENGTHS = [(461.0, 358.0), (509.0, 488.0)]  # (emission, excitation) per channel


def _rich_ome_tiff(path: Path) -> np.ndarray:
    """A TCZYX OME-TIFF whose OME says sizes, time, objective, NA, immersion, wavelengths and detector."""
    data = np.random.default_rng(3).integers(0, 4000, (2, 2, 3, 32, 48), dtype=np.uint16)
    plain = path.with_name("plain.ome.tiff")
    tifffile.imwrite(plain, data, ome=True, metadata={
        "axes": "TCZYX", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25, "PhysicalSizeZ": 1.5,
        "TimeIncrement": 30.0, "Channel": {"Name": ["DAPI", "GFP"]}})
    with tifffile.TiffFile(plain) as tf:
        ome = from_xml(tf.ome_metadata)
    ome.instruments = [Instrument(
        id="Instrument:0", microscope=Microscope(manufacturer="Nikon", model="Ti2-E"),
        objectives=[Objective(id="Objective:0", model="Plan Apo λ 60x", lens_na=1.4, immersion="Oil")],
        detectors=[Detector(id="Detector:0", manufacturer="Hamamatsu", model="ORCA-Flash4.0")])]
    image = ome.images[0]
    image.instrument_ref = InstrumentRef(id="Instrument:0")
    image.objective_settings = ObjectiveSettings(id="Objective:0")
    for ch, (em, ex) in zip(image.pixels.channels, WAVELENGTHS):
        ch.emission_wavelength, ch.excitation_wavelength = em, ex
        ch.detector_settings = DetectorSettings(id="Detector:0")
    # the planes in XYZCT order, one page each, described by our OME-XML
    tifffile.imwrite(path, data.reshape(-1, 32, 48), description=ome.to_xml().encode(), metadata=None)
    plain.unlink()
    return data


def _report(raw: Path, out: Path) -> tuple[dict, dict, dict]:
    img = open_image(raw)
    meta = extract_metadata(img)
    facts = {"uid": "d-1", "file_name": raw.name}
    rembi, dc = build_rembi(meta, facts), build_dublin_core(meta, facts)
    convert_to_zarr(img, out, settings=SETTINGS, ome_xml=meta.ome_xml)
    report = build_metadata_report(uid="d-1", ome_xml=meta.ome_xml, image_metadata=meta.to_dict(), zarr_path=out,
                                   rembi=rembi, dublin_core=dc)
    return report, rembi, dc


def _rows(report: dict, image: int = 0, channel: int | None = None) -> dict[str, dict]:
    part = report["images"][image]
    rows = part["fields"] if channel is None else part["channels"][channel]["fields"]
    return {r["field"]: r for r in rows}


def _ngff_attrs(out: Path, image: int = 0) -> dict:
    return dict(zarr.open_group(str(out), mode="r")[str(image)].attrs)["ome"]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> tuple[Path, dict]:
    d = tmp_path_factory.mktemp("report")
    _rich_ome_tiff(d / "rich.ome.tiff")
    report, _, _ = _report(d / "rich.ome.tiff", d / "rich.ome.zarr")
    json.dumps(report, ensure_ascii=False)  # the ledger and the file need JSON
    return d / "rich.ome.zarr", report


def test_each_field_says_where_it_went(synthetic) -> None:
    out, report = synthetic
    image = _rows(report)
    attrs = _ngff_attrs(out)
    axes = [a["name"] for a in attrs["multiscales"][0]["axes"]]
    units = {a["name"]: a.get("unit") for a in attrs["multiscales"][0]["axes"]}
    scale = dict(zip(axes, attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]))

    x = image["physical_size_x"]
    assert x["source"] == pytest.approx(0.25) and x["from"] == "OME-XML"
    assert x["targets"]["ngff"] == {"status": "carried", "value": pytest.approx(scale["x"])}
    assert x["targets"]["rembi"]["status"] == "carried" and x["targets"]["zarr_ome_xml"]["status"] == "carried"
    assert x["targets"]["dublin_core"]["status"] == "no field"
    # the time increment reaches NGFF only if the written t axis has a unit and the scale: say which, truthfully
    t = image["time_increment"]
    t_written = units.get("t") == "second" and scale["t"] == pytest.approx(30.0)
    assert t["targets"]["ngff"]["status"] == ("carried" if t_written else "missing")
    assert t["targets"]["rembi"]["status"] == "carried" and t["kept"]

    for key, expected in (("objective", "Plan Apo λ 60x"), ("numerical_aperture", 1.4), ("immersion", "Oil"),
                          ("instrument", "Nikon Ti2-E")):
        assert image[key]["source"] == expected
        assert image[key]["targets"]["ngff"]["status"] == "no field"
        assert image[key]["targets"]["zarr_ome_xml"]["status"] == "carried"
        assert image[key]["targets"]["rembi"]["status"] == "carried", key
    assert image["acquisition_date"]["status"] == "not in source"

    labels = [c["label"] for c in attrs["omero"]["channels"]]
    for c, (em, ex) in enumerate(WAVELENGTHS):
        ch = _rows(report, channel=c)
        assert ch["name"]["targets"]["ngff"] == {"status": "carried", "value": labels[c]}
        assert ch["emission_wavelength"]["source"] == em and ch["excitation_wavelength"]["source"] == ex
        assert ch["emission_wavelength"]["targets"]["ngff"]["status"] == "no field"
        assert ch["emission_wavelength"]["targets"]["rembi"] == {"status": "carried", "value": em}
        det = ch["detector"]
        assert det["source"] == "Hamamatsu ORCA-Flash4.0"
        assert det["targets"]["rembi"] == {"status": "no field",
                                           "reason": "microfair's REMBI record has no detector field"}
        assert det["targets"]["zarr_ome_xml"]["status"] == "carried" and det["kept"]

    summary = report["summary"]
    assert summary["fields_read"] == 8 + 2 * 4 and summary["lost"] == []
    assert summary["by_target"]["zarr_ome_xml"] == {"carried": 16, "differs": 0, "missing": 0, "no field": 0}
    assert report["zarr"]["ngff_version"] == "0.5" and report["zarr"]["ome_xml"] is True


def test_a_changed_value_and_a_lost_field_are_reported_with_reasons(synthetic, tmp_path: Path) -> None:
    out, _ = synthetic
    damaged = tmp_path / "damaged.ome.zarr"
    shutil.copytree(out, damaged)
    meta_file = damaged / "0" / "zarr.json"
    body = json.loads(meta_file.read_text())
    body["attributes"]["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"][-1] = 0.5
    meta_file.write_text(json.dumps(body))
    (damaged / "OME" / "METADATA.ome.xml").unlink()

    raw = tmp_path / "rich.ome.tiff"
    _rich_ome_tiff(raw)
    meta = extract_metadata(open_image(raw))
    facts = {"uid": "d-2", "file_name": raw.name}
    report = build_metadata_report(uid="d-2", ome_xml=meta.ome_xml, image_metadata=meta.to_dict(),
                                   zarr_path=damaged, rembi=build_rembi(meta, facts),
                                   dublin_core=build_dublin_core(meta, facts))
    x = _rows(report)["physical_size_x"]["targets"]["ngff"]
    assert x["status"] == "differs" and x["value"] == 0.5
    problems = report["summary"]["problems"]
    assert any("Physical size X differs in NGFF" in p and "0.25" in p for p in problems)
    assert "the Zarr has no OME/METADATA.ome.xml" in report["notes"]
    lost = {(item["where"], item["field"]) for item in report["summary"]["lost"]}
    # only the Zarr's OME-XML held the detector; without it the detector is lost, with every place's reason
    assert lost == {(f"image 0 (Image0), channel {c} ({name})", "detector") for c, name in enumerate(("DAPI", "GFP"))}
    reasons = report["summary"]["lost"][0]["reasons"]
    assert set(reasons) == {"ngff", "zarr_ome_xml", "rembi", "dublin_core"} and all(reasons.values())


def test_real_leica_file(tmp_path: Path) -> None:
    data = os.environ.get("MICROFAIR_TESTDATA")
    if not data:
        pytest.skip("MICROFAIR_TESTDATA not set")
    raw = Path(data) / "leica_2channel_xz.lif"
    report, _, _ = _report(raw, tmp_path / "xz.ome.zarr")
    with liffile.LifFile(raw) as lif:  # independent: the frame row step of each image, in µm
        steps = [float(np.diff(im.coords["X"][:2])[0]) * 1e6 for im in lif.images]
    for i, step in enumerate(steps):
        rows = _rows(report, i)
        assert rows["physical_size_x"]["source"] == pytest.approx(step, rel=1e-6)
        ngff = rows["physical_size_x"]["targets"]["ngff"]
        assert ngff["status"] == "carried"
        assert _ngff_attrs(tmp_path / "xz.ome.zarr", i)["multiscales"][0]["datasets"][0][
            "coordinateTransformations"][0]["scale"][-1] == pytest.approx(step, rel=1e-6)
    first = _rows(report, 0)
    assert first["numerical_aperture"]["source"] == pytest.approx(1.3)
    assert first["objective"]["source"].startswith("HC PL APO CS2")
    assert first["immersion"]["source"] == "Glycerol"
    for key in ("objective", "numerical_aperture", "immersion"):
        assert first[key]["targets"]["rembi"]["status"] == "carried"
        assert first[key]["targets"]["zarr_ome_xml"]["status"] == "carried"
    assert report["summary"]["fields_read"] > 10
    assert report["summary"]["by_target"]["ngff"]["differs"] == 0


def test_convert_stage_writes_the_report_and_the_dataset_page_shows_it(facility_config, ledger, monkeypatch,
                                                                       tmp_path: Path) -> None:
    """Through the real stages (collect → validate → convert): file, ledger record, dashboard section."""
    from tests.support.dashboard import dashboard_client
    from tests.support.real_ingest import DAY, _age, ingest

    raw = facility_config.landing_zones[0].path / "DEMO/Cells/e1" / f"{DAY}_DEMO_Cells_ALebon_Rich_RAW_v01.ome.tiff"
    raw.parent.mkdir(parents=True, exist_ok=True)
    _rich_ome_tiff(raw)
    _age(raw)
    states = ingest(facility_config, ledger)
    (uid,) = states
    assert states[uid] == "qc_done"
    ds = ledger.require(uid)
    record = ledger.get_record(uid, "metadata_report")
    (path,) = [Path(f.path) for f in ledger.files(uid, "report") if f.path.endswith("metadata_report.json")]
    assert json.loads(path.read_text(encoding="utf-8")) == record
    assert record["zarr"]["path"] == ds.zarr_path and record["summary"]["lost"] == []
    assert _rows(record, channel=1)["emission_wavelength"]["targets"]["rembi"]["status"] == "carried"

    # a lost field, as a facility would see it: the Zarr's OME-XML removed, so the detector survives nowhere
    (Path(ds.zarr_path) / "OME" / "METADATA.ome.xml").unlink()
    from microfair.ingest import report_dir
    from microfair.metadata.report import record_metadata_report

    reports = report_dir(facility_config, ds)
    source_xml = (reports / "METADATA.ome.xml").read_text(encoding="utf-8")
    record_metadata_report(ledger, uid, reports, Path(ds.zarr_path), source_xml)
    with dashboard_client(facility_config, ledger, monkeypatch) as client:
        html = client.get(f"/datasets/{uid}").text
    section = re.search(r'<section data-testid="metadata-report">(.*?)</section>', html, re.S)
    assert section, "no metadata report section"
    body = section.group(1)
    assert "16 fields read from the source" in body and "2 lost" in body
    targets = dict(re.findall(r'<tr data-target="(\w+)"><th>[^<]*</th><td class="num">(\d+)</td>', body))
    assert targets == {"ngff": "6", "zarr_ome_xml": "0", "rembi": "14", "dublin_core": "0"}  # carried per place
    lost = re.search(r'<table class="grid" data-testid="metadata-report-lost">(.*?)</table>', body, re.S).group(1)
    assert lost.count("<tr>") == 3 and "Detector" in lost and "no detector field" in lost  # header + 2 channels
    assert "None" not in body and "{" not in body
    others = re.search(r'<section data-testid="other-records">(.*?)</section>', html, re.S)
    assert not others or "metadata_report" not in others.group(1)


def test_a_report_that_cannot_be_built_is_recorded_as_its_error(facility_config, ledger, monkeypatch,
                                                                tmp_path: Path) -> None:
    from microfair.metadata.report import record_metadata_report
    from microfair.monitor.seed import seed_ledger
    from tests.support.dashboard import dashboard_client

    seed_ledger(ledger, ["LSM980"], n_datasets=1, failed_fraction=0, backlog_fraction=0, with_backup=False)
    (ds,) = ledger.datasets()
    broken = tmp_path / "broken.ome.zarr"
    (broken / "OME").mkdir(parents=True)
    (broken / "OME" / "zarr.json").write_text("{not json")
    path = record_metadata_report(ledger, ds.uid, tmp_path / "reports", broken, None)
    record = ledger.get_record(ds.uid, "metadata_report")
    assert record["error"].startswith("the metadata report could not be built: JSONDecodeError")
    assert json.loads(path.read_text(encoding="utf-8")) == record
    with dashboard_client(facility_config, ledger, monkeypatch) as client:
        html = client.get(f"/datasets/{ds.uid}").text
    section = re.search(r'<section data-testid="metadata-report">(.*?)</section>', html, re.S).group(1)
    assert '<p class="flag">the metadata report could not be built: JSONDecodeError' in section


@pytest.mark.parametrize("kind", ["lif", "ome-tiff"])
def test_the_time_increment_reaches_the_ngff_t_axis(kind: str, tmp_path: Path) -> None:
    """Found by the report: bioio gives the interval as a timedelta (dropped), or not at all (bioio-ome-tiff)."""
    from tests.support.lif_writer import LifImageSpec, write_lif

    if kind == "lif":
        data = np.random.default_rng(5).integers(0, 255, (3, 2, 8, 8), dtype=np.uint8)  # T C Y X, 1.5 s apart
        raw = write_lif(tmp_path / "t.lif", [LifImageSpec("xyt", data, ("T", "C", "Y", "X"), ranges={"T": (0, 3.0)})])
        expected = 1.5
    else:
        raw = tmp_path / "t.ome.tiff"
        _rich_ome_tiff(raw)
        expected = 30.0
    report, _, _ = _report(raw, tmp_path / "t.ome.zarr")
    axes = _ngff_attrs(tmp_path / "t.ome.zarr")["multiscales"][0]["axes"]
    scale = _ngff_attrs(tmp_path / "t.ome.zarr")["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]
    assert axes[0] == {"name": "t", "type": "time", "unit": "second"}
    assert scale["scale"][0] == pytest.approx(expected)
    assert _rows(report)["time_increment"]["targets"]["ngff"]["status"] == "carried"
