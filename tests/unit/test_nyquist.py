"""Nyquist sampling check (SVI formulas): hand-checked numbers, verdicts, missing and contradictory metadata."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from microfair.config.core import QcThresholds
from microfair.qc.nyquist import attach_nyquist, nyquist_nm, nyquist_report


def ome(*, na: str | None = "1.4", immersion: str | None = "Oil", ri: str | None = None, px: str = "0.08",
        pz: str | None = "0.25", size_z: int = 10, em: str | None = "520", ex: str | None = "488",
        mode: str | None = None, unit_x: str | None = None, extra_channel: str = "") -> str:
    """A one-image OME-XML document with the optics given (attributes left out when None)."""
    def attr(name: str, value: str | None) -> str:
        return f' {name}="{value}"' if value is not None else ""

    return f"""<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">
  <Instrument ID="Instrument:0"><Objective ID="Objective:0"{attr("LensNA", na)}{attr("Immersion", immersion)}/></Instrument>
  <Image ID="Image:0" Name="cells"><ObjectiveSettings ID="Objective:0"{attr("RefractiveIndex", ri)}/>
    <Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="uint16" SizeX="64" SizeY="64" SizeZ="{size_z}" SizeC="1"
      SizeT="1" PhysicalSizeX="{px}" PhysicalSizeY="{px}"{attr("PhysicalSizeXUnit", unit_x)}{attr("PhysicalSizeYUnit", unit_x)}{attr("PhysicalSizeZ", pz)}>
      <Channel ID="Channel:0:0" Name="GFP"{attr("EmissionWavelength", em)}{attr("ExcitationWavelength", ex)}{attr("AcquisitionMode", mode)}/>
      {extra_channel}
    </Pixels></Image></OME>"""


def axes(report: dict, channel: int = 0) -> dict[str, dict]:
    return {a["axis"]: a for a in report["scenes"][0]["channels"][channel]["axes"]}


def test_formulas_against_hand_computed_values() -> None:
    # Widefield, 63x/1.4 oil (n = 1.515), 520 nm emission: dx = 520 / (4 * 1.4) = 92.857 nm;
    # alpha = asin(1.4/1.515) = 67.53 deg, cos = 0.38215: dz = 520 / (2 * 1.515 * 0.61785) = 277.77 nm.
    dx, dz = nyquist_nm("widefield", 520, 1.4, 1.515)
    assert dx == pytest.approx(92.857, abs=0.01)
    assert dz == pytest.approx(277.77, abs=0.1)
    # Confocal, NA 1.3 oil, 488 nm excitation: the published worked example gives 46.9 nm and 165.5 nm.
    dx, dz = nyquist_nm("confocal", 488, 1.3, 1.515)
    assert dx == pytest.approx(46.9, abs=0.05)
    assert dz == pytest.approx(165.5, abs=0.1)
    # multi-photon: the same doubled bandwidth, at the excitation wavelength
    assert nyquist_nm("multiphoton", 900, 1.0, 1.333) == pytest.approx(
        (900 / 8 / 1.0, 900 / (4 * 1.333 * (1 - math.cos(math.asin(1.0 / 1.333))))))


def test_verdicts_per_axis_under_ok_over() -> None:
    # widefield: dx = 92.9 nm, dz = 277.8 nm. x, y = 150 nm -> 1.62 (under); z = 50 nm -> 0.18 (< 1/3: over)
    r = nyquist_report(ome(px="0.15", pz="0.05", mode="WideField"))
    a = axes(r)
    assert a["x"]["verdict"] == a["y"]["verdict"] == "under-sampled"
    assert a["x"]["ratio"] == pytest.approx(150 / 92.857, rel=1e-3)
    assert a["z"]["verdict"] == "over-sampled" and a["z"]["ratio"] == pytest.approx(50 / 277.77, rel=1e-3)
    metrics = sorted(f["metric"] for f in r["flags"])
    assert metrics == ["nyquist_oversampling", "nyquist_undersampling", "nyquist_undersampling"]
    under = next(f for f in r["flags"] if f["metric"] == "nyquist_undersampling")
    assert "under-sampled" in under["reason"] and "at most 93 nm" in under["reason"]
    over = next(f for f in r["flags"] if f["metric"] == "nyquist_oversampling")
    assert "5.6× finer" in over["reason"] and "up to 278 nm" in over["reason"]
    # well sampled: 80 nm and 250 nm
    ok = nyquist_report(ome(mode="WideField"))
    assert {v["verdict"] for v in axes(ok).values()} == {"ok"} and ok["flags"] == []


def test_oversampling_factor_is_configurable() -> None:
    xml = ome(px="0.04", pz="0.25", mode="WideField")  # x: 40 / 92.9 = 0.43
    assert axes(nyquist_report(xml))["x"]["verdict"] == "ok"  # default factor 3
    strict = nyquist_report(xml, QcThresholds(nyquist_oversampling_factor=2.0))
    assert axes(strict)["x"]["verdict"] == "over-sampled"


def test_confocal_uses_the_excitation_wavelength_and_halves_the_distance() -> None:
    r = nyquist_report(ome(na="1.3", px="0.08", pz="0.25", mode="LaserScanningConfocalMicroscopy"))
    a = axes(r)
    assert a["x"]["nyquist_nm"] == pytest.approx(46.9, abs=0.05)
    assert a["x"]["verdict"] == "under-sampled"  # 80 nm > 46.9 nm: fine for widefield, not for confocal
    assert r["scenes"][0]["channels"][0]["wavelength_kind"] == "excitation"


def test_units_and_refractive_index_setting() -> None:
    r = nyquist_report(ome(px="80", unit_x="nm", ri="1.518", mode="WideField"))
    a = axes(r)
    assert a["x"]["pixel_nm"] == pytest.approx(80)
    assert a["x"]["nyquist_nm"] == pytest.approx(520 / 4 / 1.4, abs=0.01)
    assert a["z"]["nyquist_nm"] == pytest.approx(nyquist_nm("widefield", 520, 1.4, 1.518)[1], abs=0.01)


def test_missing_na_is_not_computable_and_names_what_is_missing() -> None:
    r = nyquist_report(ome(na=None, em=None, ex=None))
    ch = r["scenes"][0]["channels"][0]
    assert ch["computable"] is False
    assert ch["summary"] == "not computable: missing objective NA, emission wavelength"
    assert {a["verdict"] for a in ch["axes"]} == {"not computable"}
    assert r["flags"] == []  # missing metadata is reported, not flagged
    # without the immersion medium the lateral distance still follows (n sin(alpha) = NA), the axial one not
    no_immersion = nyquist_report(ome(immersion=None, mode="WideField"))
    ch = no_immersion["scenes"][0]["channels"][0]
    assert ch["summary"] == "axial not computable: missing objective immersion (refractive index)"
    a = axes(no_immersion)
    assert a["x"]["nyquist_nm"] == pytest.approx(520 / 4 / 1.4, abs=0.01) and a["x"]["verdict"] == "ok"
    assert a["z"]["verdict"] == "not computable" and "immersion" in a["z"]["reason"]


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"na": "1.4", "immersion": "Water"}, "NA 1.4 is not below the immersion refractive index 1.333"),
    ({"pz": "-0.3"}, "z pixel size -0.3 µm is not positive"),
    ({"em": "450", "ex": "488", "mode": "WideField"}, "emission wavelength 450 nm is shorter than excitation 488"),
    ({"na": "0"}, "NA 0 is not positive"),
    ({"px": "abc"}, None),
])
def test_contradictory_metadata_is_a_flag_never_a_crash(kwargs: dict, words: str | None) -> None:
    r = nyquist_report(ome(**kwargs))
    if words is None:  # an unreadable number: said, treated as missing
        assert "the x pixel size is not a number ('abc')" in r["scenes"][0]["problems"]
        assert axes(r)["x"]["verdict"] == "not computable"
        return
    meta = [f for f in r["flags"] if f["metric"] == "nyquist_metadata"]
    assert meta and words in meta[0]["reason"], r["flags"]
    assert not any(f["metric"].startswith("nyquist_under") for f in r["flags"])


def test_multiphoton_emission_shorter_than_excitation_is_normal() -> None:
    r = nyquist_report(ome(em="520", ex="920", mode="MultiPhotonMicroscopy", na="1.0", immersion="Water",
                           px="0.1", pz="0.5"))
    assert r["flags"] == [] or all(f["metric"] != "nyquist_metadata" for f in r["flags"])
    assert axes(r)["x"]["nyquist_nm"] == pytest.approx(920 / 8, abs=0.01)


def test_not_xml_and_no_metadata() -> None:
    assert nyquist_report("<OME").get("not_computable", "").startswith("not computable: the OME-XML cannot be parsed")
    assert nyquist_report(None)["not_computable"] == "not computable: the dataset has no OME metadata"


def test_attach_is_idempotent_and_keeps_other_flags(tmp_path: Path) -> None:
    qc = tmp_path / "qc.json"
    other = {"metric": "snr", "value": 1.0, "threshold": 3.0, "reason": "low SNR", "scene": 0, "channel": 0}
    qc.write_text(json.dumps({"passed": False, "flags": [other], "scenes": []}), encoding="utf-8")
    xml = tmp_path / "METADATA.ome.xml"
    xml.write_text(ome(px="0.15", mode="WideField"), encoding="utf-8")
    first = attach_nyquist(qc, xml)
    second = attach_nyquist(qc, xml)
    assert first["flags"] == second["flags"]
    assert [f["metric"] for f in second["flags"]] == ["snr", "nyquist_undersampling", "nyquist_undersampling"]
    on_disk = json.loads(qc.read_text(encoding="utf-8"))
    assert on_disk["nyquist"]["scenes"][0]["channels"][0]["axes"][0]["verdict"] == "under-sampled"
    xml.write_text(ome(mode="WideField"), encoding="utf-8")  # fixed metadata: the Nyquist flags go
    assert [f["metric"] for f in attach_nyquist(qc, xml)["flags"]] == ["snr"]
    qc.write_text(json.dumps({"passed": True, "flags": [], "scenes": []}), encoding="utf-8")
    assert attach_nyquist(qc, tmp_path / "missing.xml")["passed"] is True
