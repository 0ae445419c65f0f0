"""The QC stage runs the Nyquist check: it lands in qc.json, in the ``nyquist`` record, and in the flags."""

from __future__ import annotations

import json
from pathlib import Path

from microfair.ingest import convert_dataset, qc_dataset, report_dir
from tests.support.synthetic_ingest import ingest_synthetic
from tests.unit.test_nyquist import ome


def test_qc_stage_records_nyquist_for_a_file_without_na_and_for_one_with_optics(facility_config, ledger) -> None:
    cfg = facility_config
    without_na, with_optics = ingest_synthetic(cfg, ledger, n=2, shape=(2, 2, 32, 32))
    for uid in (without_na, with_optics):
        convert_dataset(cfg, ledger, uid)
    # the second acquisition's OME-XML names a 63x/1.4 oil objective and 520 nm emission: its 0.2 um pixels are
    # twice the widefield Nyquist distance (92.9 nm)
    reports = report_dir(cfg, ledger.require(with_optics))
    (reports / "METADATA.ome.xml").write_text(ome(px="0.2", pz="1.0", size_z=2, mode="WideField"), encoding="utf-8")
    for uid in (without_na, with_optics):
        assert qc_dataset(cfg, ledger, uid) == "qc_done"

    plain = ledger.get_record(without_na, "nyquist")
    channels = plain["scenes"][0]["channels"]
    assert [c["summary"] for c in channels] == ["not computable: missing objective NA, emission wavelength, "
                                                "objective immersion (refractive index)"] * 2
    assert plain["flags"] == []

    record = ledger.get_record(with_optics, "nyquist")
    x = record["scenes"][0]["channels"][0]["axes"][0]
    assert x["verdict"] == "under-sampled" and x["ratio"] == round(200 / (520 / 5.6), 4)
    qc = json.loads((reports / "qc.json").read_text(encoding="utf-8"))
    assert qc["nyquist"] == record and qc["passed"] is False
    assert ledger.get_record(with_optics, "qc")["nyquist"] == record
    assert any(f["metric"] == "nyquist_undersampling" for f in qc["flags"])
    # running QC again does not pile up flags
    qc_dataset(cfg, ledger, with_optics)
    again = json.loads((reports / "qc.json").read_text(encoding="utf-8"))
    assert len(again["flags"]) == len(qc["flags"])
    assert Path(reports / "qc.json").is_file()


def test_dataset_page_shows_the_nyquist_section_and_not_under_other_records(facility_config, ledger,
                                                                            monkeypatch) -> None:
    import re

    from microfair.monitor.seed import seed_ledger
    from microfair.qc.nyquist import nyquist_report
    from tests.support.dashboard import dashboard_client

    seed_ledger(ledger, ["LSM980"], n_datasets=1, failed_fraction=0, backlog_fraction=0, with_backup=False)
    (ds,) = ledger.datasets()
    ledger.put_record(ds.uid, "nyquist", nyquist_report(ome(px="0.15", mode="WideField")))
    with dashboard_client(facility_config, ledger, monkeypatch) as client:
        html = client.get(f"/datasets/{ds.uid}").text
    section = re.search(r'<section data-testid="nyquist">(.*?)</section>', html, re.S)
    assert section, "no Nyquist section"
    body = section.group(1)
    rows = re.findall(r'<tr data-channel="0" data-axis="(\w)">(.*?)</tr>', body, re.S)
    assert [axis for axis, _ in rows] == ["x", "y", "z"]
    assert "under-sampled" in rows[0][1] and "1.62" in rows[0][1] and ">93<" in rows[0][1]
    assert body.count('data-testid="nyquist-flag"') == 2
    others = re.search(r'<section data-testid="other-records">(.*?)</section>', html, re.S)
    assert not others or "nyquist" not in others.group(1).lower()
