"""Benchmark: what verification costs in microfair_backup and in the retention robot's copy check.

On a throw-away local facility (two local restic targets), with ``--datasets`` datasets of
``--size-kb`` each:

1. the first run on one target (full read, every dataset restored);
2. a default run with nothing changed (a rotating 1/N check, the oldest read-backs restored);
3. a retention dry run with every dataset old enough: the copy check per dataset and target
   (``restic ls`` and, for small files, ``restic dump``), against the same dry run without it.

    .venv/bin/python benchmarks/backup_verification.py --datasets 20 --size-kb 256
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from microfair.backup import evaluate_policy, run_backup, run_retention
from microfair.backup.copies import CopyCheck
from microfair.config import init_local_config, load_config
from microfair.ledger import Ledger


def seed(cfg, ledger: Ledger, i: int, size: int) -> str:
    data = random.Random(i).randbytes(size)
    rel = Path("BENCH", "Study", "2025-01-01", f"2025-01-01_BENCH_D{i:04d}_RAW_v01.ome.tiff")
    landing, raw = Path(cfg.landing_zones[0].path) / rel, Path(cfg.storage.raw) / rel
    for p in (landing, raw):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    old = time.time() - 90 * 86400
    os.utime(landing, (old, old))
    uid = f"bench{i:06d}"
    ledger.upsert_dataset(uid, microscope=cfg.landing_zones[0].microscope, source_path=str(landing), name=rel.name,
                          project="BENCH", study="Study", experiment="2025-01-01", raw_path=str(raw), size_bytes=size,
                          sha256=hashlib.sha256(data).hexdigest(), state="qc_done",
                          collected_at=datetime.now(timezone.utc) - timedelta(days=90))
    return uid


class Trusting:
    """The old behaviour, for comparison: a copy counts as its ledger record says."""

    def check(self, ds, target) -> CopyCheck:
        return CopyCheck(target.name, True, "recorded")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=int, default=20)
    ap.add_argument("--size-kb", type=int, default=256)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(init_local_config(Path(tmp) / "facility"))
        ledger = Ledger.from_config(cfg)
        for i in range(args.datasets):
            seed(cfg, ledger, i, args.size_kb * 1024)
        out: dict[str, float | int | str] = {"datasets": args.datasets, "size_kb": args.size_kb}
        t = time.perf_counter()
        first = run_backup(cfg, ledger, "second-disk")
        out["first_run_s"] = round(time.perf_counter() - t, 2)
        run_backup(cfg, ledger, "offsite")
        t = time.perf_counter()
        again = run_backup(cfg, ledger, "second-disk")
        out["default_run_s"] = round(time.perf_counter() - t, 2)
        out["default_run_check"] = again.check["read_data_subset"]
        out["default_run_read_back"] = len(again.read_back)
        out["first_run_restored"] = len(first.newly_verified)
        evaluate_policy(cfg, ledger)
        t = time.perf_counter()
        trusting = run_retention(cfg, ledger, apply=False, copies=Trusting())
        out["retention_trusting_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        checked = run_retention(cfg, ledger, apply=False)
        out["retention_checked_s"] = round(time.perf_counter() - t, 2)
        out["retention_checked_per_file_s"] = round(float(out["retention_checked_s"]) / args.datasets, 2)
        out["would_delete"] = f"{sum(i.action == 'delete' for i in checked.items)} checked, " \
                              f"{sum(i.action == 'delete' for i in trusting.items)} trusting"
        print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
