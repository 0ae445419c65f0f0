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
