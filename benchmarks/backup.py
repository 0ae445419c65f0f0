"""Benchmark: restic (as microfair_backup runs it) vs ``rsync -a`` to the same disk.

1. First backup of a synthetic raw tree (incompressible, like most microscope data).
2. Second run after 1% of the files changed: time and bytes added.

Prints wall time, bytes written and peak memory (max RSS of the child) of each tool, and the
restic/rsync ratios. Both write to the same file system (``--workdir``).

    .venv/bin/python benchmarks/backup.py --files 200 --size-kb 512
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path


def run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (bytes) of the child, stdout."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = proc.stdout.read().decode() if proc.stdout else ""
    err = proc.stderr.read().decode() if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}): {err[-2000:]}")
    return wall, usage.ru_maxrss * 1024, out


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--size-kb", type=int, default=512)
    ap.add_argument("--changed", type=float, default=0.01, help="fraction of files changed before run 2")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mf-bench-", dir=args.workdir))
    try:
        src, mirror, repo = work / "raw", work / "rsync-copy", work / "restic-repo"
        rnd = random.Random(42)
        for i in range(args.files):
            p = src / f"Project{i % 4}" / f"Study{i % 7}" / f"acq_{i:05d}.ome.tiff"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(rnd.randbytes(args.size_kb * 1024))
        total = du(src)
        pw = work / "pw"
        pw.write_text("benchmark-password\n")
        env = {**os.environ, "RESTIC_PASSWORD_FILE": str(pw), "RESTIC_REPOSITORY": str(repo),
               "RESTIC_CACHE_DIR": str(work / "cache")}
        subprocess.run(["restic", "init"], env=env, check=True, capture_output=True)
        repo_base = du(repo)

        def restic_backup() -> tuple[float, int, dict]:
            wall, rss, out = run(["restic", "backup", "--json", "--host", "microfair", str(src)], env)
            summary = next(json.loads(ln) for ln in reversed(out.splitlines()) if '"summary"' in ln)
            return wall, rss, summary

        rs1_t, rs1_m, _ = run(["rsync", "-a", f"{src}/", f"{mirror}/"])
        rs1_b = du(mirror)
        re1_t, re1_m, re1 = restic_backup()
        re1_b = du(repo) - repo_base

        n = max(1, int(args.files * args.changed))
        for p in rnd.sample(sorted(src.rglob("*.tiff")), n):
            p.write_bytes(rnd.randbytes(args.size_kb * 1024))
        repo_before = du(repo)
        rs2_t, rs2_m, rs2_out = run(["rsync", "-a", "--stats", f"{src}/", f"{mirror}/"])
        rs2_b = next((int(ln.split(":")[1].split()[0].replace(",", "")) for ln in rs2_out.splitlines()
                      if ln.startswith("Total transferred file size")), -1)
        re2_t, re2_m, re2 = restic_backup()
        re2_b = du(repo) - repo_before

        mb = 1e6
        print(f"data: {args.files} files, {total / mb:.1f} MB; run 2 changes {n} file(s) "
              f"({n * args.size_kb * 1024 / mb:.1f} MB)")
        print(f"{'':28}{'rsync -a':>14}{'restic':>14}{'restic/rsync':>14}")
        rows = [
            ("run 1 time (s)", rs1_t, re1_t), ("run 1 bytes written (MB)", rs1_b / mb, re1_b / mb),
            ("run 1 peak memory (MB)", rs1_m / mb, re1_m / mb),
            ("run 2 time (s)", rs2_t, re2_t), ("run 2 bytes written (MB)", rs2_b / mb, re2_b / mb),
            ("run 2 peak memory (MB)", rs2_m / mb, re2_m / mb),
        ]
        for label, a, b in rows:
            print(f"{label:<28}{a:>14.2f}{b:>14.2f}{(b / a if a else float('nan')):>14.2f}")
        print(f"restic run 2: data_added {re2['data_added'] / mb:.2f} MB, dedup ratio "
              f"{re2['total_bytes_processed'] / max(re2['data_added'], 1):.1f} "
              f"(run 1: {re1['total_bytes_processed'] / max(re1['data_added'], 1):.2f}); "
              f"run 2 / run 1 time: restic {re2_t / re1_t:.2f}, rsync {rs2_t / rs1_t:.2f}")
        print("note: restic keeps every version (encrypted, deduplicated); rsync -a keeps only the latest.")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
