"""RO-Crate per dataset (issue 14, item 1): built from the ledger, valid, complete, small, kept up to date."""

from __future__ import annotations

import hashlib
import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import unquote

import pytest
from rocrate.rocrate import ROCrate

from microfair.config import init_local_config, load_config
from microfair.ingest import convert_dataset, report_dir
from microfair.ledger import Ledger
from microfair.monitor.seed import seed_ledger
from microfair.provenance import CRATE_NAME, RECORD, build_crate, check_crate, refresh
from microfair.provenance.chain import format_chain, read_chain
from microfair.synthetic import textured_stack, write_ome_tiff
from tests.support.real_ingest import GOOD, ingest, ingest_samples


CONFIG_FILE: dict[int, Path] = {}


def _facility(root: Path):
    config = init_local_config(root / "facility")
    cfg = load_config(config)
    CONFIG_FILE[id(cfg)] = config  # for the CLI test
    for z in cfg.landing_zones:
        z.stability_seconds = 0.0
    return cfg, Ledger.from_config(cfg)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    """The real-ingest samples (good, misnamed, empty, corrupt) through QC; the stages wrote the crates."""
    cfg, ledger = _facility(tmp_path_factory.mktemp("prov"))
    ing = ingest_samples(cfg, ledger)
    return cfg, ledger, ing.uids["good"]


@pytest.fixture
def one(tmp_path):
    """One small acquisition through QC, on its own facility (for tests that add stages)."""
    cfg, ledger = _facility(tmp_path)
    write_ome_tiff(cfg.landing_zones[0].path / "DEMO/Cells/e1" / GOOD, textured_stack((2, 2, 48, 64)),
                   channels=["DAPI", "GFP"])
    states = ingest(cfg, ledger)
    (uid,) = states
    assert states[uid] == "qc_done"
    return cfg, ledger, uid


def _crate(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _places(cfg, ledger, uid) -> dict[str, Path]:
    ds = ledger.require(uid)
    return {"zarr": Path(ds.zarr_path) / CRATE_NAME, "reports": report_dir(cfg, ds) / CRATE_NAME}


def _breaker(good: dict):
    """``broken(change)``: the problems check_crate finds in a copy of ``good`` after ``change(crate, by_id)``."""
    def broken(change) -> list[str]:
        crate = json.loads(json.dumps(good))
        change(crate, _by_id(crate))
        return check_crate(crate)
    return broken


def _by_id(crate: dict) -> dict[str, dict]:
    return {e["@id"]: e for e in crate["@graph"]}


def _local(entity_id: str, root: Path) -> Path:
    return Path(unquote(entity_id[len("file://"):])) if entity_id.startswith("file://") else root / unquote(entity_id)


def _types(e: dict) -> list[str]:
    return [e["@type"]] if isinstance(e["@type"], str) else e["@type"]


def test_the_crate_is_in_the_zarr_root_and_the_reports_and_both_are_valid(ingested):
    cfg, ledger, uid = ingested
    for where, path in _places(cfg, ledger, uid).items():
        assert path.is_file(), where
        crate = _crate(path)
        assert check_crate(crate) == [], where
        read = ROCrate(path.parent)  # rocrate's own reader, from the folder as a consumer opens it
        assert read.version == "1.2" and read.root_dataset["name"]
        assert {"@id": "https://w3id.org/ro/wfrun/process/0.5"} in _by_id(crate)["./"]["conformsTo"]
        # acquisition, collect, validate, convert, QC, and the workflow run that spans the four stages
        assert len(read.get_by_type("CreateAction")) == 6
    zarr_root = _by_id(_crate(_places(cfg, ledger, uid)["zarr"]))["./"]
    assert zarr_root["encodingFormat"].startswith("OME-Zarr") and "sha256" in zarr_root
    # Next to the root zarr.json, as the OME 2024 NGFF challenge places it.
    assert (_places(cfg, ledger, uid)["zarr"].parent / "zarr.json").is_file()


def test_every_data_entity_has_the_sha256_and_size_of_the_file_on_disk(ingested):
    cfg, ledger, uid = ingested
    path = _places(cfg, ledger, uid)["reports"]
    files = [e for e in _crate(path)["@graph"] if "File" in _types(e)]
    names = {e["name"] for e in files}
    assert {"dublin_core.json", "rembi.json", "qc.json", GOOD} <= names
    assert any(n.endswith(".png") for n in names)
    for e in files:
        local = _local(e["@id"], path.parent)
        assert local.is_file(), e["@id"]
        assert e["sha256"] == hashlib.sha256(local.read_bytes()).hexdigest(), e["@id"]
        assert int(e["contentSize"]) == local.stat().st_size, e["@id"]


def test_the_zarr_is_one_dataset_whose_tree_digest_sha256sum_reproduces(ingested):
    cfg, ledger, uid = ingested
    ds = ledger.require(uid)
    crate = _crate(_places(cfg, ledger, uid)["reports"])
    zid = f"file://{ds.zarr_path}/"
    zarr = _by_id(crate)[zid]
    assert _types(zarr) == ["Dataset"]
    assert not [e for e in crate["@graph"] if e["@id"].startswith(zid) and e["@id"] != zid]
    # Independent reference: find + sha256sum in a shell, the way a reader of the docs would check it.
    script = """find . -type f ! -path ./ro-crate-metadata.json -printf '%P\\n' | LC_ALL=C sort |
        while read -r f; do printf '%s\\t%s\\t%s\\n' "$f" "$(stat -c %s "$f")" "$(sha256sum "$f" | cut -d' ' -f1)"; done |
        sha256sum | cut -d' ' -f1"""
    expected = subprocess.run(["bash", "-c", script], cwd=ds.zarr_path, capture_output=True, text=True,
                              check=True).stdout.strip()
    assert zarr["sha256"] == expected
    total = sum(p.stat().st_size for p in Path(ds.zarr_path).rglob("*") if p.is_file() and p.name != CRATE_NAME)
    assert int(zarr["contentSize"]) == total


def test_every_stage_that_ran_is_a_create_action_with_times_tools_settings_and_agent(ingested):
    cfg, ledger, uid = ingested
    crate = _crate(_places(cfg, ledger, uid)["reports"])
    by_id = _by_id(crate)
    events = ledger.events(uid)
    assert {e.stage for e in events} == {"collect", "validate", "convert", "qc"}
    for ev in events:
        a = by_id[f"#run-{ev.id}"]
        assert a["@type"] == "CreateAction" and {"@id": a["@id"]} in by_id["./"]["mentions"]
        assert datetime.fromisoformat(a["startTime"]) == ev.started_at.replace(microsecond=0, tzinfo=timezone.utc)
        assert datetime.fromisoformat(a["endTime"]) == ev.ended_at.replace(microsecond=0, tzinfo=timezone.utc)
        assert a["actionStatus"] == "http://schema.org/CompletedActionStatus"
        tools = [by_id[t["@id"]] for t in a["instrument"]]
        assert {"name": "microfair", "softwareVersion": "0.1.0"}.items() <= tools[0].items()
        assert by_id[a["agent"]["@id"]]["@type"] == "Organization"
        assert a["result"]
    convert = next(by_id[f"#run-{e.id}"] for e in events if e.stage == "convert")
    settings = {by_id[o["@id"]]["name"]: by_id[o["@id"]]["value"] for o in convert["object"]
                if by_id[o["@id"]]["@type"] == "PropertyValue"}
    assert settings["chunk_xy"] == cfg.conversion.chunk_xy and settings["compressor"] == cfg.conversion.compressor
    qc = next(by_id[f"#run-{e.id}"] for e in events if e.stage == "qc")
    thresholds = {by_id[o["@id"]]["name"]: by_id[o["@id"]]["value"] for o in qc["object"]
                  if by_id[o["@id"]]["@type"] == "PropertyValue"}
    assert thresholds["snr_min"] == ledger.get_record(uid, "qc")["thresholds"]["snr_min"]
    assert "qc.json" in {by_id[r["@id"]]["name"] for r in qc["result"]}


def test_the_acquisition_microscope_operator_licence_project_and_study(ingested):
    cfg, ledger, uid = ingested
    by_id = _by_id(_crate(_places(cfg, ledger, uid)["reports"]))
    acq = by_id["#acquisition"]
    scope = by_id[acq["instrument"][0]["@id"]]
    assert scope["@type"] == "IndividualProduct" and scope["identifier"] == ledger.require(uid).microscope
    assert by_id[acq["agent"]["@id"]]["name"] == "ALebon"  # the user token of the file name
    root = by_id["./"]
    assert root["license"] == {"@id": "https://creativecommons.org/licenses/by/4.0/"}
    study = by_id[root["isPartOf"]["@id"]]
    assert study["name"] == "Cell shape under stress in cultured HeLa cells"
    assert by_id[study["isPartOf"]["@id"]] == {"@id": "#project-DEMO", "@type": "Project", "name": "DEMO",
                                               "parentOrganization": root["publisher"]}
    assert by_id[root["about"]["@id"]]["name"] == "Homo sapiens"
    assert uid in root["identifier"]


def test_quarantined_datasets_get_no_crate(ingested):
    cfg, ledger, _ = ingested
    for ds in ledger.datasets(state="quarantined"):
        assert refresh(cfg, ledger, ds.uid) == []
        assert ledger.get_record(ds.uid, RECORD) is None


def test_crates_over_a_seeded_ledger_list_every_attempt_and_pass_the_check(facility_config, ledger):
    seed_ledger(ledger, ["scope-a", "scope-b"], n_datasets=24, failed_fraction=0.3, seed=3)
    n_failed = 0
    for ds in ledger.datasets():
        crate = build_crate(ledger, ds.uid)
        # a dataset that failed before validation has no licence on record: only the MUSTs apply
        assert check_crate(crate, recommended=ds.state == "qc_done") == [], ds.uid
        by_id = _by_id(crate)
        for ev in ledger.events(ds.uid):
            a = by_id[f"#run-{ev.id}"]
            if ev.state == "failed":
                n_failed += 1
                assert a["actionStatus"].endswith("FailedActionStatus") and a["error"] == ev.error
                assert "result" not in a
    assert n_failed > 0


def test_check_finds_what_is_wrong_with_a_broken_crate(ingested):
    cfg, ledger, uid = ingested
    good = _crate(_places(cfg, ledger, uid)["reports"])
    assert check_crate(good) == []

    broken = _breaker(good)

    assert any("does not describe" in p for p in broken(
        lambda c, b: c["@graph"].remove(b["https://creativecommons.org/licenses/by/4.0/"])))
    assert any("without instrument" in p for p in broken(lambda c, b: b["#acquisition"].pop("instrument")))
    assert any("hasPart" in p for p in broken(lambda c, b: b["./"].update(hasPart=b["./"]["hasPart"][1:])))
    assert any("datePublished" in p for p in broken(lambda c, b: b["./"].update(datePublished="yesterday")))
    assert any("conformsTo" in p for p in broken(lambda c, b: b["./"].pop("conformsTo")))


def test_a_zarr_of_thousands_of_files_stays_one_entity_within_the_size_budget(one):
    cfg, ledger, uid = one
    ds = ledger.require(uid)
    before = _places(cfg, ledger, uid)["zarr"]
    refresh(cfg, ledger, uid)
    small = before.stat().st_size
    chunks = Path(ds.zarr_path) / "0" / "0" / "c" / "many"
    chunks.mkdir(parents=True)
    for i in range(3000):
        (chunks / str(i)).write_bytes(i.to_bytes(4, "little"))
    # the digest is computed once per conversion: a new conversion id forces it again
    body = ledger.get_record(uid, RECORD)
    ledger.put_record(uid, RECORD, {**body, "zarr": None})
    refresh(cfg, ledger, uid)
    crate = _crate(before)
    assert _by_id(crate)["#zarr-tree-digest"]["valueReference"] == f"{body['zarr']['files'] + 3000} files"
    assert before.stat().st_size - small < 200  # the same entities: only the digest and sizes changed
    assert before.stat().st_size < 48_000
    zid = f"file://{ds.zarr_path}/"
    assert not [e for e in _crate(_places(cfg, ledger, uid)["reports"])["@graph"] if e["@id"].startswith(zid + "0")]


def test_a_later_stage_updates_the_crate_and_a_refresh_with_nothing_new_writes_nothing(one):
    cfg, ledger, uid = one
    places = _places(cfg, ledger, uid)
    refresh(cfg, ledger, uid)
    assert refresh(cfg, ledger, uid) == []  # nothing new: the files are left alone
    mtimes = {k: p.stat().st_mtime_ns for k, p in places.items()}
    # The deposit records what run.py records: accession, DOI, the study file with its depositor.
    study = {"authors": [{"name": "Ana Lebon", "email": "ana.lebon@example.org", "orcid": "0000-0002-1825-0097",
                          "role": "corresponding author"}]}
    ledger.put_record(uid, "bia", {"accession": "S-BIAD999", "doi": "10.6019/S-BIAD999", "status": "POST_PROCESSED",
                                   "url": "https://www.ebi.ac.uk/biostudies/bioimages/studies/S-BIAD999",
                                   "release_date": "2027-01-31", "study": study})
    ev = ledger.start_event(uid, "deposit")
    ledger.finish_event(ev, "succeeded", details={"step": "record", "accession": "S-BIAD999"})
    written = refresh(cfg, ledger, uid)
    assert sorted(written) == sorted(places.values())
    assert all(p.stat().st_mtime_ns != mtimes[k] for k, p in places.items())
    for path in places.values():
        crate = _crate(path)
        assert check_crate(crate) == []
        by_id = _by_id(crate)
        root = by_id["./"]
        assert root["identifier"][0] == "https://doi.org/10.6019/S-BIAD999" and "S-BIAD999" in root["identifier"]
        assert root["datePublished"] == "2027-01-31"
        deposit = by_id[f"#run-{ev}"]
        assert deposit["result"] == [{"@id": "https://www.ebi.ac.uk/biostudies/bioimages/studies/S-BIAD999"}]
        assert {"@id": "https://orcid.org/0000-0002-1825-0097"} in deposit["agent"]
        assert by_id["https://orcid.org/0000-0002-1825-0097"]["name"] == "Ana Lebon"


def test_a_new_conversion_gets_a_new_crate_and_tree_digest(one):
    cfg, ledger, uid = one
    refresh(cfg, ledger, uid)
    first = ledger.get_record(uid, RECORD)["zarr"]
    convert_dataset(cfg, ledger, uid)
    refresh(cfg, ledger, uid)
    again = ledger.get_record(uid, RECORD)["zarr"]
    assert again["convert_event"] != first["convert_event"]
    crate = _crate(_places(cfg, ledger, uid)["zarr"])
    assert check_crate(crate) == []
    converts = [a for a in crate["@graph"] if a.get("name") == "Convert to OME-Zarr"]
    assert len(converts) == 2


def test_refresh_never_fails_the_stage_it_follows_and_records_why(one, caplog):
    cfg, ledger, uid = one
    target = _places(cfg, ledger, uid)["reports"]
    target.unlink(missing_ok=True)
    target.mkdir()  # something that cannot be replaced by a file sits at the crate's name
    assert refresh(cfg, ledger, uid) == []
    warnings = ledger.get_record(uid, RECORD)["warnings"]
    assert "RO-Crate not updated" in warnings[-1]["warning"]
    assert any(uid in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    target.rmdir()
    assert refresh(cfg, ledger, uid)  # the next refresh writes it and clears the warning
    assert ledger.get_record(uid, RECORD)["warnings"] == []


def test_microfair_provenance_prints_the_chain_and_the_crate(ingested, capsys):
    from microfair.cli import main

    cfg, ledger, uid = ingested
    cfg_path = CONFIG_FILE[id(cfg)]
    assert main(["--config", str(cfg_path), "provenance", uid, "--check"]) == 0
    out = capsys.readouterr().out
    for step in ("Image acquisition", "Collect from the landing zone", "Convert to OME-Zarr", "Quality control"):
        assert step in out
    assert "crate check: no problems" in out
    assert main(["--config", str(cfg_path), "provenance", uid, "--json"]) == 0
    crate = json.loads(capsys.readouterr().out)
    assert check_crate(crate) == []
    assert format_chain(read_chain(crate)).splitlines()[0] == _by_id(crate)["./"]["name"]


def test_the_dataset_page_shows_the_chain_and_serves_the_crate(ingested, monkeypatch):
    import re
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins"))
    testclient = pytest.importorskip("fastapi.testclient")
    from microfair_dashboard import deps
    from microfair_dashboard.app import create_app
    from microfair_dashboard.security import require_reader

    cfg, ledger, uid = ingested
    monkeypatch.setenv("AIRFLOW__API__SECRET_KEY", "unit-test-signing-key")
    app = create_app()
    app.state.facility.cfg, app.state.facility.ledger = cfg, ledger
    app.dependency_overrides[require_reader] = lambda: type("U", (), {"get_name": lambda s: "admin",
                                                                       "get_id": lambda s: "admin"})()
    app.dependency_overrides[deps.has_connection] = lambda: (lambda conn_id: False)
    app.dependency_overrides[deps.airflow_api] = lambda: None
    with testclient.TestClient(app, root_path="/microfair") as c:
        page = c.get(f"/datasets/{uid}")
        assert page.status_code == 200, page.text
        section = re.search(r'<section data-testid="provenance">(.*?)</section>', page.text, re.S).group(1)
        rows = re.findall(r"<tr><td class=\"num\">(\d+)</td><td>([^<]+)", section)
        assert [name for _, name in rows] == ["Image acquisition", "Collect from the landing zone",
                                              "Validate name and metadata", "Convert to OME-Zarr", "Quality control"]
        assert f'/microfair/datasets/{uid}/ro-crate' in section
        others = re.search(r'<section data-testid="other-records">(.*?)</section>', page.text, re.S)
        assert others is None or "<h3>provenance" not in others.group(1).lower()  # not shown twice
        crate = c.get(f"/datasets/{uid}/ro-crate")
        assert crate.status_code == 200 and crate.headers["content-type"].startswith("application/ld+json")
        assert crate.content == _places(cfg, ledger, uid)["reports"].read_bytes()
        assert c.get("/datasets/no-such-uid/ro-crate").status_code == 404


def test_irods_registration_updates_the_crate_and_registers_it_next_to_the_raw_object(one):
    from microfair.irods import IrodsStore, find_dataset, register_dataset
    from microfair.standins.irods import RecordingSession

    cfg, ledger, uid = one
    s = RecordingSession(groups=("microfair", "demo"))
    reg = register_dataset(cfg, ledger, uid, IrodsStore(s))
    local = _places(cfg, ledger, uid)["reports"]
    logical = f"{reg.data_object}.ro-crate-metadata.json"
    assert s.objs[logical].data == local.read_bytes()  # the crate as it is after the registration
    assert {(m.name, m.value) for m in s.objs[logical].avus} == {("microfair.ro_crate_of", uid),
                                                                ("microfair.role", "ro-crate")}
    assert find_dataset(IrodsStore(s), uid) == sorted([reg.data_object, reg.zarr_collection])
    assert f"{reg.zarr_collection}/ro-crate-metadata.json" not in s.objs  # changes later: not in the tree copy
    crate = _crate(local)
    assert check_crate(crate) == []
    by_id = _by_id(crate)
    (irods_ev,) = ledger.events(uid, "irods")
    action = by_id[f"#run-{irods_ev.id}"]
    assert action["actionStatus"].endswith("CompletedActionStatus")
    assert {"@id": "#irods-data_object"} in action["result"]
    assert by_id["#irods-data_object"]["identifier"] == reg.data_object
    assert by_id["#irods-data_object"]["sha256"] == ledger.require(uid).sha256  # hex, like every other entity
    tools = {by_id[t["@id"]]["name"] for t in action["instrument"]}
    assert "python-irodsclient" in tools
    # A re-run that changes nothing sends nothing, the crate included.
    puts = len(s.calls_of("data_objects", "put"))
    register_dataset(cfg, ledger, uid, IrodsStore(s))
    assert len(s.calls_of("data_objects", "put")) == puts
    assert s.objs[logical].data == local.read_bytes()


def test_a_backup_verdict_adds_the_copies_and_the_evaluation_to_the_crate(one):
    from microfair.backup import evaluate_policy
    from microfair.backup.run import record_kind

    cfg, ledger, uid = one
    target = cfg.backup.targets[0].name
    # What run_backup records: one run event per target (no dataset, checksum = snapshot) and the copy record.
    run = ledger.start_event(None, "backup")
    ledger.finish_event(run, "succeeded", checksum="4f1c0ffee0123456789abcdef", details={"target": target})
    ledger.put_record(uid, record_kind(target), {"target": target, "snapshot": "4f1c0ffee0123456789abcdef",
                                                  "verified": True, "verified_at": "2026-12-01T02:10:00+00:00",
                                                  "checked_at": "2026-12-01T02:10:00+00:00", "method": "restore"})
    evaluate_policy(cfg, ledger, [uid])  # the verdict changes: a backup stage event, then the crate is refreshed
    (verdict_ev,) = ledger.events(uid, "backup")
    for path in _places(cfg, ledger, uid).values():
        crate = _crate(path)
        assert check_crate(crate) == []
        by_id = _by_id(crate)
        copy = by_id[f"#backup-copy-{target}"]
        (run_ev,) = [e for e in ledger.events() if e.id == run]
        assert datetime.fromisoformat(copy["startTime"]) == run_ev.started_at.replace(microsecond=0,
                                                                                      tzinfo=timezone.utc)
        assert copy["endTime"] == "2026-12-01T02:10:00+00:00"
        assert by_id[copy["result"][0]["@id"]]["identifier"] == "4f1c0ffee0123456789abcdef"
        assert by_id[copy["instrument"][0]["@id"]]["name"] == "restic"
        evaluation = by_id[f"#run-{verdict_ev.id}"]
        assert evaluation["result"] == [{"@id": "#backup-verdict"}]
        assert "3-2-1 does not hold" in by_id["#backup-verdict"]["description"]  # one copy of three


def test_the_deposit_lists_each_crate_next_to_its_raw_file(one):
    from microfair.deposit import DepositSelection, load_study, plan_deposit

    cfg, ledger, uid = one
    study, problems = load_study(Path(__file__).resolve().parents[2] / "include/microfair/deposit/example_study.yaml")
    assert problems == []
    plan = plan_deposit(cfg, ledger, study, DepositSelection(project="DEMO"))
    raw, crate = plan.files()
    local = _places(cfg, ledger, uid)["reports"]
    assert crate.local == local and crate.remote == f"{raw.remote}.ro-crate-metadata.json"
    assert crate.sha256 == hashlib.sha256(local.read_bytes()).hexdigest() and crate.size == local.stat().st_size
    (entries,) = plan.file_lists().values()
    assert [e["path"] for e in entries] == [raw.remote, crate.remote]


def test_repository_publications_of_other_targets_are_identifiers_and_results(one):
    cfg, ledger, uid = one
    # What microfair.deposit.targets records: one entry per repository in the "publications" record.
    ledger.put_record(uid, "publications", {"zenodo": {
        "target": "zenodo", "state": "published", "id": "123", "pid": "10.5281/zenodo.123",
        "landing_page": "https://zenodo.org/records/123", "published_at": "2026-12-01T10:00:00+00:00"}})
    ev = ledger.start_event(uid, "deposit")
    ledger.finish_event(ev, "succeeded", details={"step": "zenodo:publish", "pid": "10.5281/zenodo.123"})
    refresh(cfg, ledger, uid)
    crate = _crate(_places(cfg, ledger, uid)["reports"])
    assert check_crate(crate) == []
    by_id = _by_id(crate)
    assert "https://doi.org/10.5281/zenodo.123" in by_id["./"]["identifier"]
    action = by_id[f"#run-{ev}"]
    assert action["name"] == "Deposit in Zenodo: publish"
    assert action["result"] == [{"@id": "https://zenodo.org/records/123"}]
    assert by_id["https://zenodo.org/records/123"]["identifier"] == "10.5281/zenodo.123"


def test_the_notebook_entry_the_dataset_is_based_on(one):
    cfg, ledger, uid = one
    # What microfair.eln records from a sidecar ``eln`` link (issue 14, item 4).
    ledger.put_record(uid, "eln", {"url": "https://eln.example.org/experiments.php?mode=view&id=42",
                                   "system": "elabftw", "entity_type": "experiments", "entry_id": 42,
                                   "source": "sidecar", "posts": {}})
    refresh(cfg, ledger, uid)
    crate = _crate(_places(cfg, ledger, uid)["zarr"])
    assert check_crate(crate) == []
    by_id = _by_id(crate)
    entry = by_id[by_id["./"]["isBasedOn"]["@id"]]
    assert entry["@id"] == "https://eln.example.org/experiments.php?mode=view&id=42"
    assert entry["identifier"] == "42" and "elabftw experiments 42" in entry["name"]
    assert not [e for e in crate["@graph"] if e.get("name") == "eln deposit"]


def test_hundreds_of_failed_attempts_keep_the_crate_and_its_record_small(one):
    cfg, ledger, uid = one
    for _ in range(300):
        ev = ledger.start_event(uid, "irods")
        ledger.finish_event(ev, "failed", error="IrodsError: cannot connect to the zone (retried)")
    refresh(cfg, ledger, uid)
    crate = _crate(_places(cfg, ledger, uid)["reports"])
    assert check_crate(crate) == []
    failed = [e for e in crate["@graph"] if e.get("@type") == "CreateAction" and e.get("error")]
    assert len(failed) == 10 and _by_id(crate)["#older-attempts"]["value"] == 290
    assert len(ledger.get_record(uid, RECORD)["runs"]) <= 4 + 10  # the listed runs only
    assert _places(cfg, ledger, uid)["reports"].stat().st_size < 60_000


def test_the_crate_is_a_workflow_run_and_a_provenance_run_of_the_dag(ingested):
    """Workflow/Provenance Run Crate 0.5: the DAG file (with its digest) is the mainEntity, run and orchestrated."""
    import importlib.metadata

    from microfair.provenance.workflow import dag_path

    cfg, ledger, uid = ingested
    crate = _crate(_places(cfg, ledger, uid)["reports"])
    by_id, root = _by_id(crate), _by_id(crate)["./"]
    assert {c["@id"] for c in root["conformsTo"]} == {f"https://w3id.org/ro/wfrun/{p}/0.5"
                                                     for p in ("process", "workflow", "provenance")}
    wf = by_id[root["mainEntity"]["@id"]]
    assert set(_types(wf)) == {"File", "SoftwareSourceCode", "ComputationalWorkflow"}
    dag = dag_path()
    assert dag is not None and dag.name == "microfair_ingest.py"
    assert wf["sha256"] == hashlib.sha256(dag.read_bytes()).hexdigest()
    assert {"@id": wf["@id"]} in root["hasPart"]
    steps = [by_id[s["@id"]] for s in wf["step"]]
    assert [(s["name"], s["position"]) for s in steps] == [(n, i + 1) for i, n in enumerate(
        ("collect", "validate", "convert", "qc", "backup", "irods", "deposit"))]
    run = by_id["#workflow-run"]
    assert run["instrument"] == {"@id": wf["@id"]}
    ds, events = ledger.require(uid), ledger.events(uid)
    zarr = next(e["@id"] for e in crate["@graph"] if e.get("encodingFormat") == "OME-Zarr (NGFF)")
    assert {"@id": zarr} in run["result"]
    assert [o["@id"] for o in run["object"]][0].endswith(Path(ds.raw_path).name)
    stage_runs = [by_id[f"#run-{ev.id}"] for ev in events]
    assert run["startTime"] == min(a["startTime"] for a in stage_runs)
    assert run["endTime"] == max(a["endTime"] for a in stage_runs)
    org = by_id["#orchestration"]
    engine = by_id[org["instrument"]["@id"]]
    assert engine["name"] == "Apache Airflow"
    assert engine["softwareVersion"] == importlib.metadata.version("apache-airflow")
    assert org["result"] == {"@id": "#workflow-run"}
    controls = [e for e in crate["@graph"] if "ControlAction" in _types(e)]
    assert {c["@id"] for c in org["object"]} == {c["@id"] for c in controls} and len(controls) == len(events)
    for c in controls:
        step, action = by_id[c["instrument"]["@id"]], by_id[c["object"]["@id"]]
        assert step in steps and step["name"] == next(ev.stage for ev in events if action["@id"] == f"#run-{ev.id}")
        assert step["workExample"] in action["instrument"]


def test_check_enforces_the_workflow_and_provenance_run_crate_rules(ingested):
    cfg, ledger, uid = ingested
    good = _crate(_places(cfg, ledger, uid)["reports"])
    assert check_crate(good) == []

    broken = _breaker(good)

    main = _by_id(good)["./"]["mainEntity"]["@id"]
    wf_profile = "https://w3id.org/ro/wfrun/workflow/0.5"
    assert any(wf_profile in p for p in broken(lambda c, b: b["./"].update(
        conformsTo=[r for r in b["./"]["conformsTo"] if r["@id"] != wf_profile])))
    assert any("CreativeWork" in p for p in broken(lambda c, b: b[wf_profile].update({"@type": "Thing"})))
    assert any("mainEntity" in p for p in broken(lambda c, b: b["./"].pop("mainEntity")))
    assert any("ComputationalWorkflow" in p for p in broken(lambda c, b: b[main].update({"@type": "File"})))
    def first_control(c: dict) -> dict:
        return next(e for e in c["@graph"] if e["@type"] == "ControlAction")

    assert any("not a step of the workflow" in p for p in broken(
        lambda c, b: first_control(c).update(instrument={"@id": "#tool-collect"})))
    assert any("not a step of the workflow" in p for p in broken(
        lambda c, b: b[main].update(step=b[main]["step"][1:])))  # the collect step left out of the workflow
    assert any("OrganizeAction" in p for p in broken(lambda c, b: c["@graph"].remove(b["#orchestration"])))
    assert any("engine" in p for p in broken(lambda c, b: b["#orchestration"].update(instrument={"@id": main})))
    assert any("result is not the workflow run" in p for p in broken(
        lambda c, b: b["#orchestration"].update(result={"@id": "#acquisition"})))
    assert any("mainEntity" in p and "instrument" in p for p in broken(
        lambda c, b: b["#workflow-run"].update(instrument=b["#acquisition"]["instrument"])))
    assert any("workExample" in p for p in broken(lambda c, b: b[first_control(c)["object"]["@id"]].update(
        instrument=[r for r in b[first_control(c)["object"]["@id"]]["instrument"] if not r["@id"].startswith("#tool-")])))


def test_a_dag_file_the_package_cannot_reach_is_referenced_by_id_without_digest(one, monkeypatch):
    from microfair.provenance import workflow

    cfg, ledger, uid = one
    monkeypatch.setattr(workflow, "dag_path", lambda: None)
    crate = build_crate(ledger, uid)
    by_id = _by_id(crate)
    wf = by_id[by_id["./"]["mainEntity"]["@id"]]
    assert wf["@id"] == workflow.WORKFLOW_ID and "sha256" not in wf
    assert by_id["#workflow-run"]["instrument"] == {"@id": workflow.WORKFLOW_ID}
    assert check_crate(crate) == []
