"""3-2-1 policy checker and configuration, without restic (runs and copies seeded in the ledger)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from test_backup_support import mark_backed_up, seed_dataset  # noqa: E402

from microfair.backup import backup_status, evaluate_policy  # noqa: E402
from microfair.backup.restic import DiskFullError, RepositoryUnreachable, Restic, ResticCredentials  # noqa: E402
from microfair.config import ConfigError, parse_config  # noqa: E402


def test_demo_config_declares_two_targets_one_offsite(facility_config):
    targets = facility_config.backup.targets
    assert [t.name for t in targets] == ["second-disk", "offsite"]
    assert [t.offsite for t in targets] == [False, True]
    assert all(Path(t.password_file).is_file() for t in targets)


@pytest.mark.parametrize("target, message", [
    ({"name": "x", "medium": "disk", "repository": "/r"}, "connection_id or password_file"),
    ({"name": "bad name", "medium": "disk", "repository": "/r", "password_file": "/p"}, "backup.targets.0.name"),
    ({"name": "x", "medium": "floppy", "repository": "/r", "password_file": "/p"}, "backup.targets.0.medium"),
])
def test_bad_targets_are_named(facility_config, target, message):
    data = facility_config.model_dump(mode="json")
    data["backup"]["targets"] = [target]
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        parse_config(data)


def test_password_never_in_arguments_and_scrubbed_from_errors():
    secret = "s3cr3t-Passw0rd"
    r = Restic("sftp:me@127.0.0.1:/repo", ResticCredentials(password=secret, ssh_port=2222,
                                                             ssh_identity_file="/k/id", ssh_known_hosts_file="/k/kh"))
    args = r._args("snapshots")
    assert secret not in " ".join(args)
    assert "-p 2222" in " ".join(args) and "StrictHostKeyChecking=yes" in " ".join(args)
    assert r._env()["RESTIC_PASSWORD"] == secret
    assert secret not in repr(r.credentials)
    err = r._fail("backup", 1, f"Fatal: unable to open repository: ssh command exited: connection refused {secret}")
    assert isinstance(err, RepositoryUnreachable) and secret not in str(err) and "***" in err.stderr
    full = r._fail("backup", 1, "Fatal: unable to save snapshot: write /repo/data/ab/x: no space left on device")
    assert isinstance(full, DiskFullError) and "disk full" in str(full)


def test_compliant_with_three_verified_copies(facility_config, ledger):
    uid = seed_dataset(facility_config, ledger, "A")
    mark_backed_up(facility_config, ledger, [uid])
    [v] = evaluate_policy(facility_config, ledger)
    assert v.compliant and v.copies == 3 and v.media == ["disk", "remote-server"] and v.offsite_copies == 1
    assert ledger.get_record(uid, "backup_verdict")["compliant"] is True
    assert ledger.stage_states(uid)["backup"].state == "succeeded"


def test_failed_offsite_target_breaks_the_rule(facility_config, ledger):
    uid = seed_dataset(facility_config, ledger, "A")
    mark_backed_up(facility_config, ledger, [uid])
    mark_backed_up(facility_config, ledger, [uid], failed={"offsite": "ssh: connection refused"})
    [v] = evaluate_policy(facility_config, ledger)
    assert not v.compliant and v.copies == 2
    assert any("offsite: last run failed" in r and "connection refused" in r for r in v.reasons)
    assert "0 off-site copies, 1 required" in v.reasons
    assert ledger.stage_states(uid)["backup"].state == "flagged"


def test_unverified_copy_and_missing_record_do_not_count(facility_config, ledger):
    a = seed_dataset(facility_config, ledger, "A")
    b = seed_dataset(facility_config, ledger, "B")
    mark_backed_up(facility_config, ledger, [a])  # B ingested after the last backup
    ledger.put_record(a, "backup:offsite", {**ledger.get_record(a, "backup:offsite"), "verified": False,
                                            "reason": "content in a damaged pack"})
    verdicts = {v.uid: v for v in evaluate_policy(facility_config, ledger)}
    assert not verdicts[a].compliant and any("damaged pack" in r for r in verdicts[a].reasons)
    assert not verdicts[b].compliant and any("not backed up yet" in r for r in verdicts[b].reasons)


def test_altered_primary_copy_is_not_a_copy(facility_config, ledger):
    uid = seed_dataset(facility_config, ledger, "A")
    mark_backed_up(facility_config, ledger, [uid])
    raw = Path(ledger.require(uid).raw_path)
    raw.chmod(0o644)
    data = bytearray(raw.read_bytes())
    data[100] ^= 0xFF
    st = raw.stat()
    raw.write_bytes(bytes(data))
    os.utime(raw, ns=(st.st_atime_ns, st.st_mtime_ns))  # bit rot: same size, same mtime
    [v] = evaluate_policy(facility_config, ledger, force_primary=True)
    assert not v.compliant and v.copies == 2
    assert any(r.startswith("primary:") and "differs from the ledger" in r for r in v.reasons)


def test_stale_target_does_not_count(facility_config, ledger):
    from datetime import datetime, timedelta, timezone

    uid = seed_dataset(facility_config, ledger, "A")
    mark_backed_up(facility_config, ledger, [uid])
    later = datetime.now(timezone.utc) + timedelta(hours=facility_config.backup.max_copy_age_hours + 1)
    [v] = evaluate_policy(facility_config, ledger, now=later)
    assert not v.compliant and any("older than" in r for r in v.reasons)


def test_backup_status_per_project(facility_config, ledger):
    a = seed_dataset(facility_config, ledger, "A", project="DEMO")
    seed_dataset(facility_config, ledger, "B", project="OTHER")
    mark_backed_up(facility_config, ledger, [a])
    status = backup_status(facility_config, ledger)
    assert status["compliant"] == 1
    assert status["projects"]["DEMO"]["compliant"] == 1 and status["projects"]["OTHER"]["compliant"] == 0
    assert status["targets"]["offsite"]["ok"] is True


def test_cli_backup_status_json(facility_config, ledger, capsys, tmp_path):
    import json

    from microfair.cli import main

    a = seed_dataset(facility_config, ledger, "A")
    mark_backed_up(facility_config, ledger, [a])
    cfg_file = tmp_path / "facility" / "microfair.yaml"
    assert main(["--config", str(cfg_file), "backup-status", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["datasets"][0]["compliant"] and out["projects"]["DEMO"]["datasets"] == 1
    assert main(["--config", str(cfg_file), "backup-status"]) == 0
    assert "1 of 1 dataset(s) satisfy 3-2-1" in capsys.readouterr().out
    seed_dataset(facility_config, ledger, "B")
    assert main(["--config", str(cfg_file), "backup-status"]) == 3


# -- what each run reads back (microfair.backup.schedule) -------------------------
class _Run:
    def __init__(self, check, at):
        self.details, self.ended_at, self.started_at = {"check": check}, at, at


def _cycle(cfg, runs: int, start, step):
    """Plan ``runs`` consecutive checks, ``step`` apart, each recorded as the backup run would."""
    from microfair.backup.schedule import plan_check

    events, plans = [], []
    for i in range(runs):
        now = start + i * step
        plan = plan_check(cfg, events, now, None)
        plans.append(plan)
        events.append(_Run({"ok": True, **plan.to_dict()}, now))
    return plans


def test_check_subset_rotates_through_every_part_within_the_window(facility_config):
    from datetime import datetime, timedelta, timezone

    facility_config.backup.check_subsets = 5
    facility_config.backup.full_verification_days = 7
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    plans = _cycle(facility_config, 12, start, timedelta(days=1))
    subsets = [p.subset for p in plans]
    assert subsets[0] == "100%"  # never verified: read everything
    assert subsets[1:6] == ["1/5", "2/5", "3/5", "4/5", "5/5"]  # then every part once, in order
    assert subsets[6:11] == ["1/5", "2/5", "3/5", "4/5", "5/5"]  # and again


def _part_ages(plans, days):
    """For each run: the age (days) of every part's previous read, just before that run's check."""
    last: dict[int, int] = {}
    out = []
    for plan, day in zip(plans, days):
        n = plan.subsets
        out.append({k: day - last[k] for k in range(1, n + 1) if k in last})
        for k in (range(1, n + 1) if plan.full else [plan.position]):
            last[k] = day
    return out


def test_daily_runs_rotate_without_ever_needing_a_full_read(facility_config):
    from datetime import datetime, timedelta, timezone

    facility_config.backup.check_subsets = 7
    facility_config.backup.full_verification_days = 7
    plans = _cycle(facility_config, 30, datetime(2026, 1, 1, tzinfo=timezone.utc), timedelta(days=1))
    assert [p.full for p in plans].count(True) == 1  # only the first run
    for ages in _part_ages(plans, range(30)):
        assert max(ages.values(), default=0) <= 7  # every part read again within the window


def test_runs_rarer_than_the_rotation_needs_read_everything_when_the_window_is_up(facility_config):
    from datetime import datetime, timedelta, timezone

    facility_config.backup.check_subsets = 7
    facility_config.backup.full_verification_days = 7
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    plans = _cycle(facility_config, 8, start, timedelta(days=3))  # a run every 3 days: 7 parts take 21 days
    subsets = [p.subset for p in plans]
    assert subsets[:4] == ["100%", "1/7", "2/7", "100%"], subsets  # day 9: parts 3-7 last read on day 0
    for ages in _part_ages(plans, range(0, 24, 3)):
        assert max(ages.values(), default=0) < 7 + 3  # read within the window plus at most one run interval


def test_every_dataset_is_read_back_within_the_window(facility_config):
    from datetime import datetime, timedelta, timezone

    from microfair.backup.schedule import choose_read_backs

    facility_config.backup.check_subsets = 7
    facility_config.backup.full_verification_days = 7
    facility_config.backup.restore_sample_files = 1
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    last = {f"u{i:02d}": start.isoformat() for i in range(30)}  # all restored on day 0
    read_on: dict[str, list[int]] = {u: [0] for u in last}
    for day in range(1, 29):
        now = start + timedelta(days=day)
        chosen = choose_read_backs(facility_config, last, now)
        assert len(chosen) <= 30 and len(chosen) >= 5  # ceil(30 / 7) per run
        for u in chosen:
            last[u] = now.isoformat()
            read_on[u].append(day)
    for u, days in read_on.items():
        assert max(b - a for a, b in zip(days, days[1:] + [28])) <= 7, (u, days)


def test_overdue_datasets_are_all_read_back_at_once(facility_config):
    from datetime import datetime, timedelta, timezone

    from microfair.backup.schedule import choose_read_backs

    facility_config.backup.full_verification_days = 7
    now = datetime(2026, 1, 30, tzinfo=timezone.utc)
    last = {f"old{i}": (now - timedelta(days=8)).isoformat() for i in range(20)}
    last.update({f"new{i}": (now - timedelta(days=1)).isoformat() for i in range(20)})
    last["never"] = None
    chosen = choose_read_backs(facility_config, last, now)
    assert chosen[0] == "never" and {f"old{i}" for i in range(20)} <= set(chosen)


def test_missing_restic_is_a_clear_error(facility_config, ledger, monkeypatch, tmp_path):
    from microfair.backup import ResticError, run_backup
    from microfair.backup.restic import ResticNotInstalled

    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without restic
    seed_dataset(facility_config, ledger, "A")
    with pytest.raises(ResticNotInstalled, match=r"restic is not installed \(apt-get install restic\)") as exc:
        run_backup(facility_config, ledger, "second-disk")
    assert isinstance(exc.value, ResticError) and not isinstance(exc.value, FileNotFoundError)
    [ev] = [e for e in ledger.events(stage="backup") if e.dataset_id is None]
    assert ev.state == "failed" and "apt-get install restic" in ev.error


def test_damaged_content_names_the_blob_and_a_full_cache_is_not_a_full_repository(tmp_path):
    from microfair.backup.restic import CacheFullError, DamagedContent

    r = Restic("/srv/repo", ResticCredentials(password="x" * 8), cache_dir=str(tmp_path / "cache"), label="disk")
    blob = "7ec6e5d0903b4c8ede0474cbf67a1379131b23c6912c9e62498e5138182ebb04"
    err = r._fail("dump", 1, f"cannot dump file: decrypting blob {blob} failed: ciphertext verification failed")
    assert isinstance(err, DamagedContent) and err.blobs == (blob,)
    tmp = Path(r.temp_dir)
    tmp.mkdir(parents=True)
    (tmp / "restic-temp-pack-123").write_bytes(b"x" * 100)
    full = r._fail("backup", 1, f"Fatal: unable to save snapshot: Write: write {tmp}/restic-temp-pack-123: "
                                "no space left on device")
    assert isinstance(full, CacheFullError) and not isinstance(full, DiskFullError)
    assert "backup cache" in str(full) and "retry" in str(full) and not any(tmp.iterdir())
    repo_full = r._fail("backup", 1,
                        "Fatal: unable to save snapshot: write /srv/repo/data/ab/x: no space left on device")
    assert isinstance(repo_full, DiskFullError) and "disk full on the repository" in str(repo_full)


def test_damaged_paths_map_to_every_dataset_with_content_there(facility_config, ledger):
    from microfair.backup.damage import datasets_touched

    a, b, c = (seed_dataset(facility_config, ledger, s) for s in ("A", "B", "C"))
    zarr_chunk = os.path.realpath(Path(ledger.require(a).zarr_path) / "0" / "c0")
    record_b = next(os.path.realpath(f.path) for f in ledger.files(b) if f.role == "record")
    raw_c = os.path.realpath(ledger.require(c).raw_path)
    touched = datasets_touched(ledger, ledger.datasets(), {zarr_chunk, record_b, "/elsewhere/x"})
    assert touched == {a: [zarr_chunk], b: [record_b]}
    assert datasets_touched(ledger, ledger.datasets(), {raw_c}) == {c: [raw_c]}


def test_backup_task_without_restic_fails_at_once_with_the_reason(facility_config, ledger, monkeypatch, tmp_path):
    from airflow.sdk.exceptions import AirflowFailException

    from microfair_airflow.operators.backup import BackupTargetOperator

    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without restic
    seed_dataset(facility_config, ledger, "A")
    op = BackupTargetOperator(task_id="backup_target", target_name="second-disk",
                              config_path=str(tmp_path / "facility" / "microfair.yaml"))
    with pytest.raises(AirflowFailException, match=r"restic is not installed \(apt-get install restic\)"):
        op.execute({})  # a failure that retries cannot fix: no retry


class _IndexOnlyRestic:
    """A restic whose damaged pack header is unreadable: find --pack fails, the index still answers."""

    label = "disk"

    def __init__(self, index: dict[str, set[str]], files: dict[str, set[str]], fail_index: bool = False):
        self.index, self.files, self.fail_index = index, files, fail_index

    def packs_of_blobs(self, blobs):
        return {p for p, bs in self.index.items() if bs & set(blobs)}

    def blobs_in_packs(self, packs):
        from microfair.backup.restic import ResticError

        if self.fail_index:
            raise ResticError("index unreadable")
        return set().union(*(self.index[p] for p in packs))

    def paths_of_blobs(self, blobs):
        return {path for path, bs in self.files.items() if bs & set(blobs)}

    def paths_in_packs(self, packs):
        from microfair.backup.restic import DamagedContent

        raise DamagedContent("ciphertext verification failed")


def test_damage_is_traced_through_the_index_when_the_pack_header_is_unreadable():
    from microfair.backup.damage import trace

    index = {"p1": {"b1", "b2", "b3"}, "p2": {"b4"}}
    files = {"/raw/a": {"b1"}, "/raw/b": {"b2", "b4"}, "/raw/c": {"b3"}, "/raw/d": {"b4"}}
    damage = trace(_IndexOnlyRestic(index, files), set(), {"b2"})  # a restore could not decrypt b2
    assert damage.packs == {"p1"} and damage.paths == {"/raw/a", "/raw/b", "/raw/c"} and not damage.untraced
    broken = trace(_IndexOnlyRestic(index, files, fail_index=True), {"p1"}, set())
    assert broken.untraced and not broken.paths  # reported as untraced, which downgrades the whole target
