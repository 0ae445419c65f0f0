"""microfair_ingest end to end with dag.test(): good files reach QC, bad ones are quarantined, others go on."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import yaml

from microfair.collect import scan
from microfair.config import init_local_config, load_config
from microfair.ledger import Ledger
from microfair.synthetic import textured_stack, write_czi, write_ome_tiff
from tests.dags.runner import run_dag, states

pytestmark = [pytest.mark.dag, pytest.mark.slow]
DAY = "2024-05-02"


@pytest.fixture(scope="module")
def facility(tmp_path_factory):
    root = tmp_path_factory.mktemp("facility")
    config = init_local_config(root, ("scope-a", "scope-b"))
    data = yaml.safe_load(config.read_text())
    for zone in data["landing_zones"]:
        zone["stability_seconds"] = 600  # unchanged since a look an hour ago; the growing one changed since
    config.write_text(yaml.safe_dump(data))
    cfg = load_config(config)
    a, b = cfg.zone("scope-a").path, cfg.zone("scope-b").path
    files = {
        "good_tiff": write_ome_tiff(a / "DEMO/Cells/e1" / f"{DAY}_DEMO_Cells_ALebon_Control_RAW_v01.ome.tiff",
                                    textured_stack((2, 3, 96, 128)), channels=["DAPI", "GFP"]),
        "good_czi": write_czi(b / "DEMO/Cells/e1" / f"{DAY}_DEMO_Cells_ALebon_Treated_RAW_v01.czi",
                              textured_stack((1, 2, 128, 96), seed=4)),
        "misnamed": write_ome_tiff(a / "mon essai été.ome.tiff", textured_stack((1, 1, 64, 64), seed=5)),
    }
    empty = a / "bad" / f"{DAY}_DEMO_Cells_ALebon_Empty_RAW_v01.czi"
    empty.parent.mkdir(parents=True)
    empty.write_bytes(b"")
    noise = a / "bad" / f"{DAY}_DEMO_Cells_ALebon_Noise_RAW_v01.czi"
    noise.write_bytes(os.urandom(100_000))
    files.update(empty=empty, noise=noise)
    testdata = os.environ.get("MICROFAIR_TESTDATA")
    if testdata:
        for sample in sorted(Path(testdata).glob("*")):
            if sample.suffix in (".czi", ".lif"):
                dest = b / "SAMPLES/Vendor" / DAY / sample.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(sample, dest)
                files[f"real:{sample.name}"] = dest
    growing = a / f"{DAY}_DEMO_Cells_ALebon_Growing_RAW_v01.ome.tiff"
    growing.write_bytes(b"II*\x00 still being written")
    old = time.time() - 3600
    for p in files.values():
        os.utime(p, (old, old))
    os.utime(empty, (old, old))
    # Quiescence is two looks 600 s apart: the facility's scan had its first look an hour ago ...
    scan(cfg, Ledger.from_config(cfg), now=old)
    with open(growing, "ab") as f:  # ... and the growing file has changed since
        f.write(b" more")
    return config, files, growing


@pytest.fixture(scope="module")
def run(facility, airflow_home):
    config, files, _ = facility
    return run_dag("microfair_ingest", airflow_home, config)


def test_every_readable_file_reaches_qc_with_a_valid_zarr(facility, run):
    config, files, _ = facility
    cfg = load_config(config)
    ledger = Ledger.from_config(cfg)
    by_source = {d.source_path: d for d in ledger.datasets()}
    readable = [k for k in files if k.startswith(("good", "misnamed", "real:"))]
    for key in readable:
        ds = by_source[str(files[key])]
        assert ds.state == "qc_done", (key, ds.state, ds.reason)
        assert ds.zarr_path and Path(ds.zarr_path).is_dir()
        assert ledger.get_record(ds.uid, "qc"), key
        assert Path(ds.raw_path).stat().st_mode & 0o222 == 0


def test_every_ingested_dataset_has_a_valid_ro_crate_in_its_zarr_and_its_reports(facility, run):
    from microfair.ingest import report_dir
    from microfair.provenance import CRATE_NAME, check_crate

    config, _, _ = facility
    cfg = load_config(config)
    ledger = Ledger.from_config(cfg)
    done = [d for d in ledger.datasets() if d.state == "qc_done"]
    assert len(done) >= 3
    for ds in done:
        for path in (Path(ds.zarr_path) / CRATE_NAME, report_dir(cfg, ds) / CRATE_NAME):
            crate = json.loads(path.read_text(encoding="utf-8"))
            assert check_crate(crate) == [], (ds.uid, path)
            actions = {e["name"] for e in crate["@graph"] if e["@type"] == "CreateAction"}
            assert {"Image acquisition", "Collect from the landing zone", "Validate name and metadata",
                    "Convert to OME-Zarr", "Quality control"} <= actions, (ds.uid, path)


def test_bad_files_are_quarantined_and_their_tasks_fail_alone(facility, run):
    config, files, growing = facility
    ledger = Ledger.from_config(load_config(config))
    by_source = {d.source_path: d for d in ledger.datasets()}
    assert by_source[str(files["empty"])].state == "quarantined"
    assert "empty file" in by_source[str(files["empty"])].reason
    noise = by_source[str(files["noise"])]
    assert noise.state == "quarantined" and noise.reason.startswith("validate:")
    assert by_source[str(growing)].state == "discovered"  # still being written: seen, not picked up
    collect = states(run, "ingest_acquisition.collect")
    validate = states(run, "ingest_acquisition.validate")
    assert list(collect.values()).count("failed") == 1  # the empty file
    assert list(validate.values()).count("failed") == 1  # the random bytes
    assert "success" in states(run, "ingest_acquisition.qc").values()
    assert states(run, "report") == {-1: "success"}


def test_events_carry_the_task_instance_for_re_runs(facility, run):
    config, files, _ = facility
    ledger = Ledger.from_config(load_config(config))
    failed = [e for e in ledger.events() if e.state == "failed"]
    assert failed and all(e.dag_id == "microfair_ingest" and e.run_id == run["run_id"] for e in failed)
    assert all(e.task_id.startswith("ingest_acquisition.") and e.map_index is not None for e in failed)


def test_a_second_run_is_idempotent(facility, run, airflow_home):
    config, files, _ = facility
    ledger = Ledger.from_config(load_config(config))
    before = {d.uid: (d.state, d.sha256) for d in ledger.datasets()}
    again = run_dag("microfair_ingest", airflow_home, config)
    after = {d.uid: (d.state, d.sha256) for d in ledger.datasets()}
    assert after == before
    assert states(again, "report") == {-1: "success"}


def test_a_run_maps_over_at_most_max_map_length_acquisitions(tmp_path, airflow_home):
    config = init_local_config(tmp_path / "small", ("scope-a",))
    zone = load_config(config).zone("scope-a").path
    old = time.time() - 3600
    for i, cond in enumerate(("Control", "Treated", "Washout")):
        p = write_ome_tiff(zone / "DEMO/Cells/e2" / f"{DAY}_DEMO_Cells_ALebon_{cond}_RAW_v01.ome.tiff",
                           textured_stack((1, 1, 32, 32), seed=i), channels=["DAPI"])
        os.utime(p, (old, old))
    result = run_dag("microfair_ingest", airflow_home, config, extra_env={"AIRFLOW__CORE__MAX_MAP_LENGTH": "2"})
    assert result["state"] == "success"
    assert sorted(states(result, "ingest_acquisition.collect")) == [0, 1]
    assert "3 acquisitions are ready; this run takes 2" in result["log"]
    # the third is only "discovered" (its looks are in the ledger), waiting for the next run
    datasets = Ledger.from_config(load_config(config)).datasets()
    assert len([d for d in datasets if d.state != "discovered"]) == 2


def test_the_batched_dag_ingests_small_acquisitions_in_one_mapped_instance(tmp_path, airflow_home):
    config = init_local_config(tmp_path / "batched", ("scope-a",))
    zone = load_config(config).zone("scope-a").path
    old = time.time() - 3600
    for i, cond in enumerate(("Control", "Treated", "Washout")):
        p = write_ome_tiff(zone / "DEMO/Cells/e3" / f"{DAY}_DEMO_Cells_ALebon_{cond}_RAW_v01.ome.tiff",
                           textured_stack((1, 1, 32, 32), seed=i), channels=["DAPI"])
        os.utime(p, (old, old))
    (zone / "DEMO/Cells/e3" / f"{DAY}_DEMO_Cells_ALebon_Empty_RAW_v01.czi").write_bytes(b"")
    os.utime(zone / "DEMO/Cells/e3" / f"{DAY}_DEMO_Cells_ALebon_Empty_RAW_v01.czi", (old, old))
    result = run_dag("microfair_ingest_batched", airflow_home, config)
    # One mapped instance for the four small files; its verdict fails for the bad one, and so does the run (red).
    assert result["state"] == "failed"
    assert states(result, "ingest_batch.qc") == {0: "success"}
    assert states(result, "ingest_batch.verdict") == {0: "failed"}
    assert states(result, "report") == {-1: "success"} and states(result, "all_batches_passed") == {-1: "upstream_failed"}
    assert "this run ingested 3 acquisition(s)" in result["log"]  # the failed batch's good datasets count
    ledger = Ledger.from_config(load_config(config))
    by_state = {d.name: d.state for d in ledger.datasets()}
    assert sorted(by_state.values()) == ["qc_done", "qc_done", "qc_done", "quarantined"]
