"""The retention robot never deletes outside a landing zone, nor anything not verified 3-2-1."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from test_backup_support import mark_backed_up, seed_dataset  # noqa: E402

from microfair.backup import retention, run_retention  # noqa: E402
from microfair.backup.copies import CopyCheck  # noqa: E402
from microfair.backup.retention import ACTION  # noqa: E402
from microfair.backup.run import record_kind  # noqa: E402


class RepositoriesAsRecorded:
    """Stand-in for the repository check (no restic here): each copy holds as its ledger record says,
    except the targets named in ``broken`` (target → reason)."""

    def __init__(self, cfg, ledger, *, now=None, credentials=None, broken=None):
        self.ledger, self.broken, self.calls = ledger, dict(broken or {}), []

    def check(self, ds, target):
        self.calls.append((ds.uid, target.name))
        rec = self.ledger.get_record(ds.uid, record_kind(target.name)) or {}
        if target.name in self.broken:
            return CopyCheck(target.name, False, rec.get("snapshot"), self.broken[target.name])
        return CopyCheck(target.name, bool(rec.get("verified")), rec.get("snapshot"),
                         None if rec.get("verified") else "not verified")


@pytest.fixture(autouse=True)
def _repositories_as_recorded(monkeypatch):
    monkeypatch.setattr(retention, "RepositoryCopies", RepositoriesAsRecorded)


def _item(report, uid):
    return next(i for i in report.items if i.uid == uid)


@pytest.fixture
def compliant(facility_config, ledger):
    uid = seed_dataset(facility_config, ledger, "A", age_days=90)
    mark_backed_up(facility_config, ledger, [uid])
    return uid


def test_dry_run_is_the_default_and_deletes_nothing(facility_config, ledger, compliant):
    src = Path(ledger.require(compliant).source_path)
    report = run_retention(facility_config, ledger)
    assert report.dry_run and _item(report, compliant).action == "delete"
    assert report.bytes_freeable == 200_000 and src.exists()
    assert ledger.audit_entries(ACTION) == []


def test_apply_deletes_and_audits_with_checksum(facility_config, ledger, compliant):
    ds = ledger.require(compliant)
    facility_config.retention.dry_run = False
    report = run_retention(facility_config, ledger)
    assert _item(report, compliant).action == "deleted" and not Path(ds.source_path).exists()
    assert Path(ds.raw_path).exists()  # the primary copy is untouched
    [entry] = ledger.audit_entries(ACTION)
    assert entry.details["sha256"] == ds.sha256 and entry.details["path"] == ds.source_path
    assert entry.details["copies"] == 3
    # Empty acquisition folders are tidied, the landing zone itself stays.
    assert not Path(ds.source_path).parent.exists() and Path(facility_config.landing_zones[0].path).is_dir()
    again = run_retention(facility_config, ledger)  # idempotent
    assert _item(again, compliant).action == "freed" and len(ledger.audit_entries(ACTION)) == 1


def test_young_files_wait_and_say_when(facility_config, ledger):
    uid = seed_dataset(facility_config, ledger, "Young", age_days=10)
    mark_backed_up(facility_config, ledger, [uid])
    item = _item(run_retention(facility_config, ledger, apply=True), uid)
    assert item.action == "wait" and "younger than 60 days" in item.reason
    expected = (datetime.now(timezone.utc) + timedelta(days=50)).date()
    assert abs((datetime.fromisoformat(item.eligible_on).date() - expected).days) <= 1
    assert Path(ledger.require(uid).source_path).exists()


def test_not_compliant_is_kept(facility_config, ledger):
    uid = seed_dataset(facility_config, ledger, "A", age_days=90)
    mark_backed_up(facility_config, ledger, [uid], failed={"offsite": "ssh: connect to host 127.0.0.1: Connection refused"})
    mark_backed_up(facility_config, ledger, [uid], targets=["second-disk"])
    item = _item(run_retention(facility_config, ledger, apply=True), uid)
    assert item.action == "refuse" and "not verified 3-2-1" in item.reason and "offsite" in item.reason
    assert Path(ledger.require(uid).source_path).exists()


def test_file_changed_after_backup_is_kept(facility_config, ledger, compliant):
    src = Path(ledger.require(compliant).source_path)
    data = bytearray(src.read_bytes())
    data[-1] ^= 0x01
    st = src.stat()
    src.write_bytes(bytes(data))
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    item = _item(run_retention(facility_config, ledger, apply=True), compliant)
    assert item.action == "refuse" and "changed since collection" in item.reason and src.exists()


def test_symlinked_file_is_kept_and_its_target_untouched(facility_config, ledger, compliant, tmp_path):
    ds = ledger.require(compliant)
    src = Path(ds.source_path)
    elsewhere = tmp_path / "precious.bin"
    elsewhere.write_bytes(src.read_bytes())
    src.unlink()
    src.symlink_to(elsewhere)
    item = _item(run_retention(facility_config, ledger, apply=True), compliant)
    assert item.action == "refuse" and elsewhere.exists() and src.is_symlink()
    assert "outside landing zone" in item.reason or "symbolic link" in item.reason


def test_symlinked_folder_inside_the_zone_is_not_followed(facility_config, ledger, compliant, tmp_path):
    ds = ledger.require(compliant)
    src = Path(ds.source_path)
    zone = Path(facility_config.landing_zones[0].path)
    real = zone / "real-folder"
    real.mkdir()
    (real / src.name).write_bytes(src.read_bytes())
    os.utime(real / src.name, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns))
    link = zone / "link-folder"
    link.symlink_to(real, target_is_directory=True)
    ledger.update(compliant, source_path=str(link / src.name))
    item = _item(run_retention(facility_config, ledger, apply=True), compliant)
    assert item.action == "refuse" and "symbolic link" in item.reason
    assert (real / src.name).exists()


@pytest.mark.parametrize("make_path", [
    lambda zone, raw: f"{zone}/../../storage/raw/{Path(raw).relative_to(Path(zone).parents[1] / 'storage' / 'raw')}",
    lambda zone, raw: raw,  # the raw tree itself
    lambda zone, raw: "relative/path.tiff",
])
def test_paths_outside_the_landing_zone_are_never_deleted(facility_config, ledger, compliant, make_path):
    ds = ledger.require(compliant)
    zone = str(facility_config.landing_zones[0].path)
    ledger.update(compliant, source_path=make_path(zone, ds.raw_path))
    item = _item(run_retention(facility_config, ledger, apply=True), compliant)
    assert item.action == "refuse"
    assert Path(ds.raw_path).exists()


def test_hard_link_to_the_primary_is_kept(facility_config, ledger, compliant):
    ds = ledger.require(compliant)
    src = Path(ds.source_path)
    src.unlink()
    os.link(ds.raw_path, src)  # the acquisition "copy" is the primary itself
    item = _item(run_retention(facility_config, ledger, apply=True), compliant)
    assert item.action == "refuse" and "primary raw copy itself" in item.reason
    assert src.exists() and Path(ds.raw_path).exists()


def test_bind_mount_of_the_raw_tree_is_kept(facility_config, ledger, compliant):
    ds = ledger.require(compliant)
    zone = Path(facility_config.landing_zones[0].path)
    mnt = zone / "raw-view"
    mnt.mkdir()
    proc = subprocess.run(["mount", "--bind", str(facility_config.storage.raw), str(mnt)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"bind mounts not permitted here: {proc.stderr.decode().strip()}")
    try:
        rel = Path(ds.raw_path).relative_to(facility_config.storage.raw)
        ledger.update(compliant, source_path=str(mnt / rel))
        item = _item(run_retention(facility_config, ledger, apply=True), compliant)
        assert item.action == "refuse" and ("mount point" in item.reason or "primary raw copy" in item.reason)
        assert Path(ds.raw_path).exists()
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_landing_zone_overlapping_storage_is_refused(facility_config, ledger, compliant):
    ds = ledger.require(compliant)
    facility_config.landing_zones[0].path = Path(facility_config.storage.raw).parent
    ledger.update(compliant, source_path=ds.raw_path)
    item = _item(run_retention(facility_config, ledger, apply=True), compliant)
    assert item.action == "refuse" and "overlaps the facility storage" in item.reason
    assert Path(ds.raw_path).exists()


def test_every_counted_copy_is_checked_and_the_audit_names_its_snapshot(facility_config, ledger, compliant):
    checker = RepositoriesAsRecorded(facility_config, ledger)
    item = _item(run_retention(facility_config, ledger, apply=True, copies=checker), compliant)
    assert item.action == "deleted", item
    assert sorted(checker.calls) == [(compliant, "offsite"), (compliant, "second-disk")]
    [entry] = ledger.audit_entries(ACTION)
    assert entry.details["snapshots"] == {"second-disk": "feedc0de", "offsite": "feedc0de"}
    assert "second-disk feedc0d" in item.reason


@pytest.mark.parametrize("broken", [
    {"offsite": "repository does not open: target offsite: repository /x unreachable"},
    {"second-disk": "its most recent restic check failed (damaged packs: 0123456789ab)"},
    {"second-disk": "snapshot feedc0de is not listed in the repository now",
     "offsite": "restore from snapshot feedc0de failed now: damaged content"},
])
def test_a_copy_that_fails_its_check_now_frees_nothing_and_says_why(facility_config, ledger, compliant, broken):
    checker = RepositoriesAsRecorded(facility_config, ledger, broken=broken)
    for apply in (False, True):
        item = _item(run_retention(facility_config, ledger, apply=apply, copies=checker), compliant)
        assert item.action == "refuse", item
        for name, why in broken.items():
            assert f"{name}: {why}" in item.reason
        assert [c["ok"] for c in item.copies if c["target"] in broken] == [False] * len(broken)
    assert Path(ledger.require(compliant).source_path).exists()
    assert ledger.audit_entries(ACTION) == []


def test_with_a_spare_target_the_remaining_checked_copies_still_count(facility_config, ledger):
    spare = facility_config.backup.targets[0].model_copy(update={"name": "tape", "medium": "tape"})
    facility_config.backup.targets.append(spare)
    uid = seed_dataset(facility_config, ledger, "A", age_days=90)
    mark_backed_up(facility_config, ledger, [uid])
    checker = RepositoriesAsRecorded(facility_config, ledger, broken={"second-disk": "repository does not open"})
    item = _item(run_retention(facility_config, ledger, apply=True, copies=checker), uid)
    assert item.action == "deleted", item
    [entry] = ledger.audit_entries(ACTION)
    assert set(entry.details["snapshots"]) == {"offsite", "tape"} and entry.details["copies"] == 3


@pytest.mark.parametrize("check, hours_ago, parts", [
    ({"ok": False, "damaged_packs": ["ab" * 32]}, 1,
     ["most recent restic check", "failed (damaged packs: abababababab)"]),
    ({"ok": True}, 49, ["most recent restic check", "is older than 48 h"]),
    (None, 1, ["no restic check recorded"]),
])
def test_the_real_checker_refuses_a_repository_whose_last_check_failed_or_is_stale(
        facility_config, ledger, compliant, check, hours_ago, parts):
    from datetime import datetime, timedelta, timezone

    from microfair.backup.copies import RepositoryCopies

    with ledger.stage(None, "backup") as o:
        o.details = {"target": "second-disk", "snapshot": "feedc0de", **({"check": check} if check else {})}
    later = datetime.now(timezone.utc) + timedelta(hours=hours_ago)
    facility_config.backup.restic_binary = "/nonexistent/restic"  # restic is never needed to refuse
    copies = RepositoryCopies(facility_config, ledger, now=later)
    result = copies.check(ledger.require(compliant), facility_config.backup.target("second-disk"))
    assert not result.ok and all(p in result.reason for p in parts), result.reason
