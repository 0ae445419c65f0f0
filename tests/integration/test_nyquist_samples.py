"""Nyquist check on the real sample files: what each vendor's metadata allows us to say."""

from __future__ import annotations

from pathlib import Path

import pytest

from microfair.metadata import extract_metadata
from microfair.qc.nyquist import nyquist_report

pytestmark = pytest.mark.integration


def report_of(path: Path) -> dict:
    meta = extract_metadata(path)
    return nyquist_report(meta.ome_xml, image_metadata=meta.to_dict(), uid=path.name)


def axes(report: dict, scene: int = 0, channel: int = 0) -> dict[str, dict]:
    return {a["axis"]: a for a in report["scenes"][scene]["channels"][channel]["axes"]}


def test_zeiss_widefield_stack_is_well_sampled(testdata: Path) -> None:
    # Plan-Apochromat 50x/1.2 water (n 1.33 from ObjectiveSettings), WideField, 568 / 517 nm emission,
    # 90.6 nm pixels, 0.32 um steps: dx = 568 / (4 * 1.2) = 118.3 nm, dz = 568 / (2 * 1.33 * (1 - cos asin(1.2/1.33)))
    r = report_of(testdata / "zeiss_s1_t3_c2_z5.czi")
    a = axes(r)
    assert r["scenes"][0]["channels"][0]["modality"] == "widefield"
    assert a["x"]["nyquist_nm"] == pytest.approx(118.33, abs=0.01)
    assert a["x"]["ratio"] == pytest.approx(90.5767 / 118.333, rel=1e-3)
    assert a["z"]["nyquist_nm"] == pytest.approx(375.4, abs=0.1) and a["z"]["ratio"] == pytest.approx(0.852, abs=1e-3)
    assert axes(r, channel=1)["x"]["nyquist_nm"] == pytest.approx(517 / 4.8, abs=0.01)
    assert r["flags"] == []


def test_zeiss_transmitted_light_plane_is_not_computable(testdata: Path) -> None:
    r = report_of(testdata / "zeiss_s1_t1_c1_z1.czi")
    ch = r["scenes"][0]["channels"][0]
    assert ch["summary"].startswith("not computable: missing emission wavelength (a transmitted-light channel")
    assert axes(r)["z"]["verdict"] == "not applicable" and r["flags"] == []


def test_leica_xz_scans_judge_the_depth_axis_as_axial(testdata: Path) -> None:
    # 63x/1.30 glycerol, no AcquisitionMode (widefield assumed), 517 nm: dx = 517 / 5.2 = 99.4 nm;
    # the xz scan's Y axis is depth (microfair's original-axes annotation), so it is judged axially.
    r = report_of(testdata / "leica_2channel_xz.lif")
    xzt = axes(r, scene=0)
    assert xzt["x"]["direction"] == "lateral" and xzt["y"]["direction"] == "axial"
    assert xzt["x"]["nyquist_nm"] == pytest.approx(99.42, abs=0.01)
    assert xzt["x"]["verdict"] == "under-sampled" and xzt["x"]["ratio"] == pytest.approx(1.411, abs=1e-3)
    xzy = axes(r, scene=1)
    assert xzy["z"]["direction"] == "lateral" and xzy["y"]["direction"] == "axial"  # z was the sample's Y
    under = [f for f in r["flags"] if f["metric"] == "nyquist_undersampling"]
    assert under and "widefield (assumed)" in under[0]["reason"]


def test_leica_tilescan_tiles_are_judged_with_the_las_x_objective(testdata: Path) -> None:
    # microfair-lif reads the tile scan (one scene per tile) with its LAS X settings: C PLAN 10x/0.22 POL, air,
    # PMT 2 band centre 537.5 nm, no AcquisitionMode (widefield assumed): dx = 537.5 / (4 * 0.22) = 610.8 nm.
    r = report_of(testdata / "leica_lasx_simulator_tilescan.lif")
    assert len(r["scenes"]) == 4 and r["scenes"][0]["na"] == pytest.approx(0.22)
    a = axes(r)
    assert a["x"]["nyquist_nm"] == pytest.approx(610.8, abs=0.05) and a["x"]["verdict"] == "under-sampled"
    assert a["z"]["pixel_nm"] == pytest.approx(6227.6, abs=0.1)  # the z steps go downwards; the size is their length


def test_olympus_oib(testdata: Path) -> None:
    r = report_of(testdata / "olympus_fv1000_3ch.oib")  # microfair-oib reads it: a failure here is a failure
    # UPLFLN 40x/0.75, no immersion recorded: the lateral distance needs only NA (lambda / (4 NA)), the axial n
    assert r["scenes"][0]["na"] == pytest.approx(0.75)
    ch1, ch2, td = r["scenes"][0]["channels"]
    assert ch1["summary"].startswith("not computable: missing emission wavelength")
    x = {a["axis"]: a for a in ch2["axes"]}["x"]
    assert x["nyquist_nm"] == pytest.approx(ch2["wavelength_nm"] / 3, abs=0.01)
    assert x["verdict"] == "ok" and x["ratio"] == pytest.approx(x["pixel_nm"] / (ch2["wavelength_nm"] / 3), rel=1e-3)
    assert ch2["summary"] == "axial not computable: missing objective immersion (refractive index)"


def test_cli_qc_of_a_file_includes_the_nyquist_check(testdata: Path, capsys) -> None:
    import json

    from microfair.cli import main

    code = main(["qc", str(testdata / "zeiss_s1_t3_c2_z5.czi")])
    body = json.loads(capsys.readouterr().out)
    x = {a["axis"]: a for a in body["nyquist"]["scenes"][0]["channels"][0]["axes"]}["x"]
    assert x["ratio"] == pytest.approx(90.5767 / 118.333, rel=1e-3) and x["verdict"] == "ok"
    assert not [f for f in body["flags"] if f["metric"].startswith("nyquist")]
    assert code == (0 if body["passed"] else 1)
