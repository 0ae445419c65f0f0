"""A main file's companion folder (a .vsi's ``_<stem>_/``) goes through retention, backup checks, iRODS and
deposits with it: freed only when verified, checked like the main file, registered and deposited with it."""

from __future__ import annotations

import hashlib
import os
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from blake3 import blake3

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_backup_retention import RepositoriesAsRecorded  # noqa: E402
from test_backup_support import mark_backed_up  # noqa: E402

from microfair.backup import retention, run_retention  # noqa: E402
from microfair.backup.copies import RepositoryCopies, _Repository  # noqa: E402
from microfair.backup.restic import Node  # noqa: E402
from microfair.backup.retention import ACTION  # noqa: E402
from microfair.backup.run import record_kind  # noqa: E402

MAIN = b"vsi-header" * 100
ETS = {"stack1/frame_t_0.ets": b"ets-pixels" * 3000, "stack1/frame_t_1.ets": b"more-pixels" * 2000}


def seed_vsi(cfg, ledger, stem: str = "slide", age_days: float = 90) -> str:
    """A .vsi acquisition as collect leaves it: landing main file + ``_<stem>_/`` and their raw copies."""
    rel = Path("DEMO", "Study", "2025-01-01")
    name = f"{stem}.vsi"
    uid = hashlib.sha1(stem.encode()).hexdigest()[:16]
    old = time.time() - age_days * 86400
    for base in (Path(cfg.landing_zones[0].path), Path(cfg.storage.raw)):
        folder = base / rel
        (folder / f"_{stem}_" / "stack1").mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(MAIN)
        for sub, data in ETS.items():
            (folder / f"_{stem}_" / sub).write_bytes(data)
        for p in [folder / name, *[folder / f"_{stem}_" / s for s in ETS]]:
            os.utime(p, (old, old))
    raw = Path(cfg.storage.raw) / rel / name
    landing = Path(cfg.landing_zones[0].path) / rel / name
    ledger.upsert_dataset(uid, microscope=cfg.landing_zones[0].microscope, source_path=str(landing), name=name,
                          project="DEMO", study="Study", experiment="2025-01-01", raw_path=str(raw),
                          size_bytes=len(MAIN), sha256=hashlib.sha256(MAIN).hexdigest(),
                          blake3=blake3(MAIN).hexdigest(), state="qc_done",
                          collected_at=datetime.now(timezone.utc) - timedelta(days=age_days),
                          source_mtime_ns=landing.stat().st_mtime_ns)
    ledger.add_file(uid, "raw", raw, size_bytes=len(MAIN), sha256=hashlib.sha256(MAIN).hexdigest())
    for sub, data in ETS.items():
        ledger.add_file(uid, "companion", raw.parent / f"_{stem}_" / sub, size_bytes=len(data),
                        sha256=hashlib.sha256(data).hexdigest(), blake3=blake3(data).hexdigest())
    return uid


@pytest.fixture
def vsi(facility_config, ledger, monkeypatch):
    monkeypatch.setattr(retention, "RepositoryCopies", RepositoriesAsRecorded)
    uid = seed_vsi(facility_config, ledger)
    mark_backed_up(facility_config, ledger, [uid])
    return uid


def _item(report, uid):
    return next(i for i in report.items if i.uid == uid)


# -- 1. retention ------------------------------------------------------------------------------------------

def test_retention_frees_the_companion_folder_with_the_main_file(facility_config, ledger, vsi):
    ds = ledger.require(vsi)
    folder = Path(ds.source_path).with_name("_slide_")
    plan = _item(run_retention(facility_config, ledger), vsi)
    assert plan.action == "delete" and "2 companion file(s)" in plan.reason
    assert plan.size_bytes == len(MAIN) + sum(map(len, ETS.values()))
    report = run_retention(facility_config, ledger, apply=True)
    assert _item(report, vsi).action == "deleted", _item(report, vsi).reason
    assert not Path(ds.source_path).exists() and not folder.exists()
    assert Path(ds.raw_path).with_name("_slide_").joinpath("stack1/frame_t_0.ets").is_file()  # primary untouched
    [entry] = ledger.audit_entries(ACTION)
    assert sorted(entry.details["companions"]) == sorted(str(folder / s) for s in ETS)


@pytest.mark.parametrize("where", ["landing", "raw"])
def test_a_damaged_companion_keeps_the_whole_acquisition(facility_config, ledger, vsi, where):
    ds = ledger.require(vsi)
    base = Path(ds.source_path if where == "landing" else ds.raw_path).with_name("_slide_")
    ets = base / "stack1" / "frame_t_1.ets"
    ets.chmod(0o644)
    ets.write_bytes(b"X" + ETS["stack1/frame_t_1.ets"][1:])
    item = _item(run_retention(facility_config, ledger, apply=True), vsi)
    assert item.action == "refuse" and "frame_t_1.ets" in item.reason, item.reason
    landing = Path(ds.source_path)
    assert landing.is_file() and all((landing.with_name("_slide_") / s).is_file() for s in ETS)
    assert ledger.audit_entries(ACTION) == []


def test_a_companion_file_the_ledger_does_not_know_stays(facility_config, ledger, vsi):
    stray = Path(ledger.require(vsi).source_path).with_name("_slide_") / "notes.txt"
    stray.write_text("added after collection")
    assert _item(run_retention(facility_config, ledger, apply=True), vsi).action == "deleted"
    assert stray.is_file() and not (stray.parent / "stack1").exists()


# -- the copy check in the repository (restic stand-in: the snapshot's content in a dict) -------------------

class SnapshotStandIn:
    """What ``restic ls`` / ``restic dump`` of one snapshot answer: path → bytes."""

    def __init__(self, files):
        self.files = files

    def ls(self, snapshot, *paths):
        for p, data in self.files.items():
            if any(p == q or p.startswith(q + os.sep) for q in paths):
                yield Node(p, "file", len(data), "", "")

    def dump(self, snapshot, path, sink):
        sink(self.files[path])
        return len(self.files[path])


def _checker(cfg, ledger, uid, *, damage=None, drop=None, record_companions=True):
    ds = ledger.require(uid)
    raw = os.path.realpath(ds.raw_path)
    files = {raw: MAIN, **{os.path.realpath(f.path): Path(f.path).read_bytes()
                           for f in ledger.files(uid, "companion")}}
    target = cfg.backup.targets[0]
    rec = ledger.get_record(uid, record_kind(target.name))
    rec.update(algorithm="blake3", read_back_digest=ds.blake3)
    if record_companions:
        rec["companions"] = {os.path.realpath(f.path): {"algorithm": "blake3", "read_back_digest": f.blake3}
                             for f in ledger.files(uid, "companion")}
    ledger.put_record(uid, record_kind(target.name), rec)
    for p in files:
        if damage and p.endswith(damage):
            files[p] = b"Y" + files[p][1:]
    for p in list(files):
        if drop and p.endswith(drop):
            del files[p]
    copies = RepositoryCopies(cfg, ledger)
    copies._repos[target.name] = _Repository(SnapshotStandIn(files), snapshots={rec["snapshot"]})
    return copies.check(ds, target)


def test_the_copy_check_holds_when_every_companion_is_in_the_snapshot(facility_config, ledger, vsi):
    result = _checker(facility_config, ledger, vsi)
    assert result.ok and result.restored, result.reason


@pytest.mark.parametrize("kw, words", [
    ({"damage": "frame_t_0.ets"}, ["frame_t_0.ets", "restored from snapshot"]),
    ({"drop": "frame_t_1.ets"}, ["does not list", "frame_t_1.ets"]),
    ({"record_companions": False}, ["no read-back of companion", "frame_t_"]),
])
def test_a_copy_missing_or_damaging_a_companion_does_not_count(facility_config, ledger, vsi, kw, words):
    result = _checker(facility_config, ledger, vsi, **kw)
    assert not result.ok and all(w in result.reason for w in words), result.reason


# -- 2. backup verification (real restic, one local target) ------------------------------------------------

def test_the_backup_read_back_covers_the_companions_and_a_damaged_one_downgrades(facility_config, ledger):
    from microfair.backup import run_backup

    good = seed_vsi(facility_config, ledger, "good")
    bad = seed_vsi(facility_config, ledger, "bad")
    ets = Path(ledger.require(bad).raw_path).with_name("_bad_") / "stack1" / "frame_t_1.ets"
    ets.write_bytes(b"Z" + ETS["stack1/frame_t_1.ets"][1:])  # the raw .ets no longer matches the ledger
    target = facility_config.backup.targets[0].name
    run = run_backup(facility_config, ledger, target)
    # the bad .ets (the run's rotating sample of catalogued files may pick it a second time, by the hour)
    assert run.state == "flagged" and "restore(s) did not match" in run.error, run.error
    ok, damaged = (ledger.get_record(u, record_kind(target)) for u in (good, bad))
    assert ok["verified"] and sorted(ok["companions"]) == sorted(
        os.path.realpath(f.path) for f in ledger.files(good, "companion"))
    assert all(c["read_back_digest"] == blake3(ETS[s]).hexdigest()
               for c, s in zip((ok["companions"][k] for k in sorted(ok["companions"])), sorted(ETS)))
    assert not damaged["verified"] and "frame_t_1.ets" in damaged["reason"], damaged
    assert good in run.newly_verified and bad not in run.newly_verified


# -- 4. deposits: the BIA file list and the repository targets carry the companion folder ------------------

def test_deposits_list_the_companion_files_in_their_folder(facility_config, ledger):
    from microfair.deposit import DepositSelection, load_study, plan_deposit
    from microfair.deposit.targets.run import gather_items

    uid = seed_vsi(facility_config, ledger)
    study, problems = load_study(Path(__file__).resolve().parents[2] / "include/microfair/deposit/example_study.yaml")
    assert problems == []
    study.components[0].select.study = "Study"
    plan = plan_deposit(facility_config, ledger, study, DepositSelection(project="DEMO"))
    folder = "DEMO/Study/2025-01-01"
    want = {f"{folder}/slide.vsi"} | {f"{folder}/_slide_/{s}" for s in ETS}
    (entries,) = plan.file_lists().values()
    listed = {e["path"]: e for e in entries}
    assert want <= set(listed)
    ets = listed[f"{folder}/_slide_/stack1/frame_t_0.ets"]
    assert ets["size"] == len(ETS["stack1/frame_t_0.ets"])
    assert {"name": "role", "value": "companion"} in ets["attributes"]
    assert {"name": "uid", "value": uid} in ets["attributes"]
    items = {i.name: i for i in gather_items(facility_config, ledger, plan, "dataverse", include_reports=False)}
    assert want <= set(items)
    item = items[f"{folder}/_slide_/stack1/frame_t_1.ets"]
    assert item.folder == f"{folder}/_slide_/stack1"  # Dataverse's directoryLabel
    assert item.sha256 == hashlib.sha256(ETS["stack1/frame_t_1.ets"]).hexdigest() and item.uid == uid


# -- 3. iRODS: the companion folder under the dataset collection (recording stand-in of the session) --------

def test_irods_puts_the_companions_with_checksums_avus_and_acls_and_reruns_idempotently(facility_config, ledger):
    pytest.importorskip("irods")
    from microfair.irods import IrodsStore, irods_to_sha256, register_dataset
    from microfair.standins.irods import RecordingSession

    uid = seed_vsi(facility_config, ledger)
    s = RecordingSession(groups=("microfair", "demo"))
    reg = register_dataset(facility_config, ledger, uid, IrodsStore(s))
    assert sorted(reg.companions) == sorted(f"{reg.collection}/_slide_/{p}" for p in ETS)
    for sub, data in ETS.items():
        obj = s.objs[f"{reg.collection}/_slide_/{sub}"]
        assert obj.data == data and irods_to_sha256(obj.checksum) == hashlib.sha256(data).hexdigest()
        avus = {(m.name, m.value) for m in obj.avus}
        assert {("microfair.uid", uid), ("microfair.role", "companion"),
                ("microfair.companion_of", reg.data_object)} <= avus
        assert obj.acl["demo"] == "read_object" and obj.acl["rods"] == "own"
    again = register_dataset(facility_config, ledger, uid, IrodsStore(s))
    assert again.transferred == [] and again.unchanged == 1 + len(ETS) and again.avus_added == 0
    assert ledger.get_record(uid, "irods")["companions"] == again.companions


def test_irods_refuses_a_companion_that_no_longer_matches_the_ledger_and_leaves_the_main_file_out(
        facility_config, ledger):
    pytest.importorskip("irods")
    from microfair.irods import ChecksumMismatch, IrodsStore, register_dataset
    from microfair.standins.irods import RecordingSession

    uid = seed_vsi(facility_config, ledger)
    ets = Path(ledger.require(uid).raw_path).with_name("_slide_") / "stack1" / "frame_t_0.ets"
    ets.write_bytes(b"Q" + ETS["stack1/frame_t_0.ets"][1:])
    s = RecordingSession(groups=("microfair", "demo"))
    with pytest.raises(ChecksumMismatch, match="frame_t_0.ets"):
        register_dataset(facility_config, ledger, uid, IrodsStore(s))
    assert not any(p.endswith("slide.vsi") or p.endswith("frame_t_0.ets") for p in s.objs), sorted(s.objs)


def test_a_damaged_raw_companion_fails_the_primary_copy_of_the_verdict(facility_config, ledger, vsi):
    from microfair.backup.policy import evaluate_dataset, target_health

    ds = ledger.require(vsi)
    health = target_health(facility_config, ledger, datetime.now(timezone.utc))
    assert evaluate_dataset(facility_config, ledger, ds, health, force_primary=True).compliant
    ets = Path(ds.raw_path).with_name("_slide_") / "stack1" / "frame_t_0.ets"
    ets.write_bytes(ETS["stack1/frame_t_0.ets"][:-1] + b"!")
    verdict = evaluate_dataset(facility_config, ledger, ds, health, force_primary=True)
    assert not verdict.compliant and any("primary" in r and "frame_t_0.ets" in r for r in verdict.reasons), verdict
