"""Damaged and vanished backups, with the real restic (issue 10, items 2 and 3).

* retention checks the copies themselves at deletion time: a corrupted repository and a
  deleted one free nothing, and the reasons name both targets;
* a damaged pack found by the *default* run (no full verification) downgrades every
  dataset with content in that pack, and each of them raises a 3-2-1 alert.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_backup_support import seed_dataset  # noqa: E402

from microfair.backup import evaluate_policy, restic_for, run_backup, run_retention  # noqa: E402
from microfair.backup.restic import CacheFullError, DiskFullError  # noqa: E402
from microfair.backup.retention import ACTION  # noqa: E402
from microfair.monitor.alerts import scan_alerts  # noqa: E402

pytestmark = pytest.mark.integration


def _backup_all(cfg, ledger, **kw):
    return {t.name: run_backup(cfg, ledger, t.name, **kw) for t in cfg.backup.targets}


def _corrupt(pack: Path, every: int = 32_768) -> None:
    """Overwrite a few bytes every ``every`` bytes, and in the pack's header at its end: every blob is
    damaged, and the pack can no longer list its own content (``restic find --pack`` fails)."""
    pack.chmod(0o644)
    size = pack.stat().st_size
    with open(pack, "r+b") as f:
        for pos in [*range(min(every // 2, size // 2), size - 64, every), size - 40]:
            f.seek(pos)
            f.write(b"\x00CORRUPTED\x00" * (4 if pos < size - 64 else 2))


def test_retention_frees_nothing_when_one_repository_is_corrupt_and_the_other_gone(facility_config, ledger):
    facility_config.retention.dry_run = False
    uids = [seed_dataset(facility_config, ledger, f"R{i}", size=120_000, age_days=90) for i in range(2)]
    runs = _backup_all(facility_config, ledger)
    assert all(r.state == "succeeded" for r in runs.values())
    assert all(v.compliant for v in evaluate_policy(facility_config, ledger))
    healthy = run_retention(facility_config, ledger, apply=False)  # the checks pass on healthy repositories
    assert [i.action for i in healthy.items] == ["delete", "delete"], healthy.items
    assert all(c["ok"] and c["restored"] for i in healthy.items for c in i.copies)

    disk = Path(facility_config.backup.target("second-disk").repository)
    packs = list(disk.glob("data/*/*"))
    assert packs
    for pack in packs:  # every pack file of second-disk
        _corrupt(pack)
    shutil.rmtree(facility_config.backup.target("offsite").repository)  # and offsite is gone

    report = run_retention(facility_config, ledger, apply=True)
    assert ledger.audit_entries(ACTION) == []
    for uid in uids:
        item = next(i for i in report.items if i.uid == uid)
        assert item.action == "refuse", item
        assert Path(ledger.require(uid).source_path).exists()
        assert "second-disk" in item.reason and "offsite" in item.reason, item.reason
        assert "repository" in item.reason


def test_damaged_pack_found_by_the_default_run_downgrades_every_dataset_in_it(facility_config, ledger):
    # A repository of several packs (so that a 10 % check subset usually misses the damaged one),
    # with four small datasets stored together in one pack.
    seed_dataset(facility_config, ledger, "Bulk", size=20_000_000, project="BULK")
    uids = [seed_dataset(facility_config, ledger, f"D{i}", size=150_000) for i in range(4)]
    _backup_all(facility_config, ledger)  # first runs: full verification
    assert all(v.compliant for v in evaluate_policy(facility_config, ledger))

    target = facility_config.backup.target("second-disk")
    client = restic_for(facility_config, target)
    raw = {os.path.realpath(ledger.require(u).raw_path): u for u in uids}
    packs = list(Path(target.repository).glob("data/*/*"))
    holding = {p: {raw[x] for x in client.paths_in_packs([p.name]) if x in raw} for p in packs}
    pack = max(packs, key=lambda p: len(holding[p]))
    expected = holding[pack]
    assert len(expected) >= 3, holding
    _corrupt(pack)

    run = run_backup(facility_config, ledger, "second-disk")  # the default run
    assert not run.full_verification
    assert run.state == "flagged", run
    assert sorted(u for u in expected if u in run.unverified) == sorted(expected), run.unverified
    for uid in expected:
        assert "damaged pack" in run.unverified[uid] and pack.name[:12] in run.unverified[uid]
    verdicts = {v.uid: v for v in evaluate_policy(facility_config, ledger)}
    assert not any(verdicts[u].compliant for u in expected)
    lost = {a.uid for a in scan_alerts(ledger, facility_config.alerts, claim=False) if a.kind == "backup_321_lost"}
    assert expected <= lost


def test_full_backup_cache_is_a_clear_retryable_error_and_leaves_no_partial(facility_config, ledger, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(cache)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a 2 MB tmpfs for the cache here: {proc.stderr.decode().strip()}")
    try:
        facility_config.backup.cache_dir = str(cache)
        uid = seed_dataset(facility_config, ledger, "Big", size=8_000_000)  # packs of 4 MiB do not fit
        with pytest.raises(CacheFullError, match="backup cache .* is full") as exc:
            run_backup(facility_config, ledger, "second-disk")
        assert not isinstance(exc.value, DiskFullError) and "retry" in str(exc.value)
        partials = [p for p in cache.rglob("*") if p.is_file() and p.name.startswith(("restic-temp-pack", "tmp-"))]
        assert partials == []
        assert ledger.get_record(uid, "backup:second-disk") is None  # nothing counted as a copy
        ev = [e for e in ledger.events(stage="backup") if e.dataset_id is None][-1]
        assert ev.state == "failed" and "backup cache" in ev.error
    finally:
        subprocess.run(["umount", str(cache)], check=False)
    run = run_backup(facility_config, ledger, "second-disk")  # space is back (the tmpfs is gone): the retry works
    assert run.state == "succeeded" and run.verified == [uid]
