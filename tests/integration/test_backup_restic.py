"""Backups with the real restic: local targets, an off-site target over a real sshd, and the faults.

Faults covered: restic SIGKILLed mid-backup, the off-site sshd stopped, a corrupted pack,
and a full disk on a target.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_backup_support import Sshd, seed_dataset  # noqa: E402

from microfair.backup import (  # noqa: E402
    DiskFullError,
    RepositoryUnreachable,
    ResticError,
    evaluate_policy,
    restic_for,
    run_backup,
    run_retention,
)

pytestmark = pytest.mark.integration


def _verdicts(cfg, ledger):
    return {v.uid: v for v in evaluate_policy(cfg, ledger)}


def _backup_all(cfg, ledger, **kw):
    return {t.name: run_backup(cfg, ledger, t.name, **kw) for t in cfg.backup.targets}


def _target_events(ledger, name):
    return [e for e in ledger.events(stage="backup") if e.dataset_id is None and e.details.get("target") == name]


def test_two_local_targets_make_every_dataset_3_2_1(facility_config, ledger):
    uids = [seed_dataset(facility_config, ledger, f"S{i}") for i in range(3)]
    runs = _backup_all(facility_config, ledger)
    for run in runs.values():
        assert run.state == "succeeded", run.error
        assert sorted(run.newly_verified) == sorted(uids)  # every new dataset restored and compared
        assert run.check["ok"] and run.full_verification  # first run: full verification due
    verdicts = _verdicts(facility_config, ledger)
    assert all(v.compliant and v.copies == 3 for v in verdicts.values())
    # The run's numbers are in the ledger.
    ev = _target_events(ledger, "offsite")[-1]
    assert ev.state == "succeeded" and ev.bytes > 600_000 and ev.details["snapshot"] == runs["offsite"].snapshot
    assert {"bytes_added", "dedup_ratio", "duration_s"} <= set(ev.details)


def test_incremental_run_adds_little_and_is_idempotent(facility_config, ledger):
    facility_config.backup.full_verification_days = 30
    uids = [seed_dataset(facility_config, ledger, f"S{i}", size=300_000) for i in range(4)]
    first = run_backup(facility_config, ledger, "second-disk")
    second = run_backup(facility_config, ledger, "second-disk")  # nothing changed: a re-run
    assert second.state == "succeeded" and not second.full_verification
    assert second.bytes_added < first.bytes_added / 20
    assert second.dedup_ratio > 20
    assert second.newly_verified == [] and sorted(second.verified) == sorted(uids)  # carried over, not re-read
    assert len(second.samples) >= 1 and all(s["ok"] for s in second.samples)  # but a sample is restored
    new = seed_dataset(facility_config, ledger, "New", size=300_000)
    third = run_backup(facility_config, ledger, "second-disk")
    assert third.newly_verified == [new]
    # The check subset rotates, its position kept in the ledger; the read-backs go oldest first.
    assert [r.check["read_data_subset"] for r in (first, second, third)] == ["100%", "1/7", "2/7"]
    assert _target_events(ledger, "second-disk")[-1].details["check"]["position"] == 2
    assert len(second.read_back) == 3 and set(uids) - set(second.read_back) <= set(third.read_back)
    assert all(ledger.get_record(u, "backup:second-disk")["read_back_at"] for u in second.read_back)
    assert 300_000 <= third.bytes_added < first.bytes_added / 2


def test_corrupted_pack_downgrades_exactly_the_affected_datasets(facility_config, ledger):
    old = seed_dataset(facility_config, ledger, "Old", size=400_000)
    _backup_all(facility_config, ledger)
    repo = Path(facility_config.backup.target("second-disk").repository)
    before = set(repo.glob("data/*/*"))
    new = seed_dataset(facility_config, ledger, "New", size=400_000)
    _backup_all(facility_config, ledger)
    assert all(v.compliant for v in _verdicts(facility_config, ledger).values())
    new_packs = sorted(set(repo.glob("data/*/*")) - before, key=lambda p: p.stat().st_size)
    pack = new_packs[-1]  # the largest new pack holds New's data
    pack.chmod(0o644)
    with open(pack, "r+b") as f:
        f.seek(pack.stat().st_size // 2)
        f.write(b"\x00CORRUPTED\x00" * 8)

    run = run_backup(facility_config, ledger, "second-disk", full=True)
    assert run.state == "flagged" and pack.name in run.check["damaged_packs"]
    assert "restic check found errors" in run.error
    assert new in run.unverified and "damaged pack" in run.unverified[new]
    assert old in run.verified
    verdicts = _verdicts(facility_config, ledger)
    assert not verdicts[new].compliant and any("damaged pack" in r for r in verdicts[new].reasons)
    assert verdicts[old].compliant
    assert ledger.stage_states(new)["backup"].state == "flagged"
    ev = _target_events(ledger, "second-disk")[-1]
    assert ev.state == "flagged" and pack.name in ev.details["check"]["damaged_packs"]


def test_restic_killed_mid_backup_then_rerun_completes(facility_config, ledger, tmp_path):
    uid = seed_dataset(facility_config, ledger, "Big", size=24_000_000)
    target = facility_config.backup.target("second-disk")
    # A slow restic (2 MiB/s to the repository) so that the kill lands mid-backup.
    slow = tmp_path / "slow-restic"
    slow.write_text('#!/bin/sh\nexec restic --limit-upload 2048 "$@"\n')
    slow.chmod(0o755)
    facility_config.backup.restic_binary = str(slow)
    started: list[subprocess.Popen] = []
    client = restic_for(facility_config, target, on_start=started.append)
    restic_for(facility_config, target).unlock(create=True)
    errors: list[BaseException] = []

    def backup() -> None:
        try:
            run_backup(facility_config, ledger, target.name, restic=client)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    th = threading.Thread(target=backup)
    th.start()
    repo = Path(target.repository)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        written = sum(p.stat().st_size for p in repo.glob("data/*/*"))
        if written > 4_000_000 and started and started[-1].args[-2:] != ["unlock"]:
            break
        time.sleep(0.05)
    victim = started[-1]
    assert "backup" in victim.args, victim.args
    os.kill(victim.pid, signal.SIGKILL)
    th.join(120)
    assert errors and isinstance(errors[0], ResticError)
    assert list(repo.glob("locks/*")), "a killed restic leaves its lock behind"
    assert _target_events(ledger, target.name)[-1].state == "failed"

    facility_config.backup.restic_binary = "restic"
    run = run_backup(facility_config, ledger, target.name, full=True)
    assert run.state == "succeeded" and run.check["ok"] and run.check["read_data_subset"] == "100%"
    assert run.verified == [uid]


def test_full_disk_on_a_target_counts_nothing(facility_config, ledger, tmp_path):
    uid = seed_dataset(facility_config, ledger, "Big", size=8_000_000)
    target = facility_config.backup.target("second-disk")
    mnt = Path(target.repository)
    mnt.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True)
    if proc.returncode != 0:
        # No mount permission: inject ENOSPC with a restic stand-in that fails the way restic does.
        fake = tmp_path / "restic-enospc"
        fake.write_text('#!/bin/sh\ncase "$*" in *" backup "*) echo "Fatal: unable to save snapshot: '
                        'write /repo/data/00/x: no space left on device" >&2; exit 1;; esac\n'
                        'exec restic "$@"\n')
        fake.chmod(0o755)
        facility_config.backup.restic_binary = str(fake)
    try:
        with pytest.raises(DiskFullError, match="disk full"):
            run_backup(facility_config, ledger, target.name)
        assert ledger.get_record(uid, "backup:second-disk") is None  # nothing recorded as a copy
        run_backup(facility_config, ledger, "offsite")
        [v] = evaluate_policy(facility_config, ledger)
        assert not v.compliant and v.copies == 2
        assert any("second-disk: last run failed" in r and "disk full" in r for r in v.reasons)
        ev = _target_events(ledger, target.name)[-1]
        assert ev.state == "failed" and "disk full" in ev.error
    finally:
        if proc.returncode == 0:
            subprocess.run(["umount", str(mnt)], check=False)


@pytest.fixture
def sshd(tmp_path):
    server = Sshd(tmp_path / "sshd")
    server.start()
    yield server
    server.stop()


def test_offsite_over_sftp_and_a_stopped_server(facility_config, ledger, sshd, caplog):
    pw = facility_config.backup.target("offsite").password_file
    facility_config.backup.targets[1] = sshd.target(pw)
    facility_config.retention.dry_run = False
    uid = seed_dataset(facility_config, ledger, "A", age_days=90)
    runs = _backup_all(facility_config, ledger)
    assert runs["offsite"].state == "succeeded" and runs["offsite"].verified == [uid]
    assert (sshd.repo_dir / "config").is_file()  # the repository lives behind the SSH server
    assert _verdicts(facility_config, ledger)[uid].compliant

    sshd.stop()
    with pytest.raises(RepositoryUnreachable, match="offsite.*unreachable") as exc:
        run_backup(facility_config, ledger, "offsite")
    assert "Connection refused" in str(exc.value) or "ssh" in str(exc.value)
    assert run_backup(facility_config, ledger, "second-disk").state == "succeeded"  # the others go on
    v = _verdicts(facility_config, ledger)[uid]
    assert not v.compliant and any("offsite: last run failed" in r for r in v.reasons)
    report = run_retention(facility_config, ledger)
    [item] = report.items
    assert not report.dry_run and item.action == "refuse" and "not verified 3-2-1" in item.reason
    assert Path(ledger.require(uid).source_path).exists()

    secret = Path(pw).read_text().strip()
    assert secret not in caplog.text
    for ev in ledger.events():
        assert secret not in f"{ev.error} {ev.details}"
