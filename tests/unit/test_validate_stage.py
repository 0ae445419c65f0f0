"""The validate stage: records, flags and quarantine, over synthetic files (no Airflow)."""

import json
import os
import time
from pathlib import Path

import pytest

from microfair.collect import collect, scan
from microfair.ingest import report_dir, validate_dataset
from microfair.synthetic import textured_stack, write_czi, write_ome_tiff

GOOD = "2024-05-02_DEMO_Cells_ALebon_Control_RAW_v01"


def _age(p: Path) -> None:
    t = time.time() - 3600
    os.utime(p, (t, t))


def _collect_all(cfg, ledger) -> dict[str, str]:
    out = {}
    for acq in scan(cfg, ledger).ready:
        out[Path(acq.relpath).name] = acq.uid
        collect(cfg, ledger, acq)
    return out


@pytest.fixture
def zone(facility_config) -> Path:
    return facility_config.landing_zones[0].path


def test_good_file_gets_all_records_beside_the_data_and_in_the_ledger(facility_config, ledger, zone):
    src = write_ome_tiff(zone / "DEMO/Cells/e1" / f"{GOOD}.ome.tiff", textured_stack((2, 3, 64, 80)),
                         channels=["DAPI", "GFP"])
    side = src.with_name(src.name + ".meta.yaml")
    side.write_text("study:\n  title: Cell shape under stress in cultured HeLa cells\n"
                    "biosample:\n  organism: Homo sapiens\n")
    _age(src), _age(side)
    uid = _collect_all(facility_config, ledger)[src.name]
    assert validate_dataset(facility_config, ledger, uid) == "validated"
    ds = ledger.require(uid)
    assert ds.state == "validated" and ds.name_valid
    out = report_dir(facility_config, ds)
    dc = json.loads((out / "dublin_core.json").read_text())
    for element in ("title", "creator", "subject", "description", "publisher", "contributor", "date", "type",
                    "format", "identifier", "source", "language", "relation", "coverage", "rights"):
        assert element in dc, element
    assert ledger.get_record(uid, "dublin_core") == dc
    rembi = ledger.get_record(uid, "rembi")
    assert "Cell shape under stress" in json.dumps(rembi["study"])  # from the sidecar
    assert "Homo sapiens" in json.dumps(rembi["biosample"])
    meta = ledger.get_record(uid, "image_metadata")
    assert meta["scenes"][0]["dims"]["C"] == 2 and "ome_xml" not in meta
    assert (out / "METADATA.ome.xml").read_text().lstrip().startswith("<")
    assert ledger.stage_states(uid)["validate"].state == "succeeded"


def test_bad_name_is_flagged_but_the_data_goes_on(facility_config, ledger, zone):
    src = write_ome_tiff(zone / "mon image été.ome.tiff", textured_stack((1, 1, 32, 32)))
    _age(src)
    uid = _collect_all(facility_config, ledger)[src.name]
    assert validate_dataset(facility_config, ledger, uid) == "validated"
    st = ledger.stage_states(uid)["validate"]
    assert st.state == "flagged" and "spaces" in st.error
    assert ledger.get_record(uid, "name_check")["suggestion"]


def test_bad_name_is_quarantined_when_the_policy_says_so(facility_config, ledger, zone):
    facility_config.naming.policy = "quarantine"
    src = write_ome_tiff(zone / "bad name.ome.tiff", textured_stack((1, 1, 32, 32)))
    _age(src)
    uid = _collect_all(facility_config, ledger)[src.name]
    assert validate_dataset(facility_config, ledger, uid) == "quarantined"
    ds = ledger.require(uid)
    assert "convention" in ds.reason and ds.raw_path is None
    # quarantine names are made safe like every path from outside input (safepath): the blank is folded
    assert (facility_config.storage.quarantine / ds.microscope / "bad-name.ome.tiff").exists()
    assert src.exists()


@pytest.mark.parametrize("name, make, reason", [
    (f"{GOOD}_t.czi", "truncated", ""),
    (f"{GOOD}_r.czi", "random", ""),
    (f"{GOOD}.xyz", "unsupported", ""),
])
def test_unreadable_files_are_quarantined_with_the_reader_reason(facility_config, ledger, zone, tmp_path, name,
                                                                   make, reason):
    if make == "truncated":
        full = write_czi(tmp_path / "full.czi", textured_stack((1, 2, 128, 128)))
        data = full.read_bytes()[: full.stat().st_size // 3]
    elif make == "random":
        data = os.urandom(50_000)
    else:
        data = b"plain text, not an image\n" * 20
    src = zone / name
    src.write_bytes(data)
    _age(src)
    uid = _collect_all(facility_config, ledger)[name]
    assert validate_dataset(facility_config, ledger, uid) == "quarantined"
    ds = ledger.require(uid)
    assert ds.state == "quarantined" and ds.reason.startswith("validate: ")
    assert ledger.stage_states(uid)["validate"].state == "failed"
    q = facility_config.storage.quarantine / ds.microscope / name
    assert q.read_bytes() == data  # nothing lost
    assert json.loads(q.with_name(name + ".reason.json").read_text())["reason"]
    assert src.read_bytes() == data  # the source is untouched
    assert not list(facility_config.storage.raw.rglob(name))  # and the raw tree holds only good data
