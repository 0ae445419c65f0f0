"""Page times of the microfair dashboard over a large ledger, inside a real Airflow API server.

Seeds a ledger with 10,000 datasets and about 100,000 stage events (plus QC, Dublin Core
and 3-2-1 verdict records), starts ``airflow api-server`` with the dashboard plugin (the
demo's Airflow set-up, benchmarks/airflow_api.py), then requests every page as a logged-in user, one
request at a time, and prints the median and p95 of each page's time, the target
(p95 < 300 ms), the ratio to a peer measured in the same run with the same client,
**Airflow's own ``GET /api/v2/dags?limit=50``**, and the peak memory (RSS) of the API
server and of this process.

    .venv/bin/python benchmarks/dashboard.py [--datasets 10000] [--events-per-dataset 10] [--n 30]
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import requests

from airflow_api import start_api_server  # benchmarks/airflow_api.py, beside this script

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugins" / "microfair_dashboard"))

TARGET_P95_MS = 300.0


def p95(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))]


class RssSampler(threading.Thread):
    """Peak RSS of a process tree (the API server and its workers), sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                procs = [self.proc, *self.proc.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.05)


def timed(session: requests.Session, url: str, n: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        session.get(url, timeout=60).raise_for_status()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = session.get(url, timeout=60)
        r.raise_for_status()
        _ = r.content
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=int, default=10_000)
    ap.add_argument("--events-per-dataset", type=int, default=10)
    ap.add_argument("--n", type=int, default=30, help="timed requests per page")
    args = ap.parse_args()

    import build_assets

    build_assets.build()
    with tempfile.TemporaryDirectory(prefix="microfair-bench-") as tmp:
        t0 = time.perf_counter()
        stack = start_api_server(Path(tmp), n_datasets=args.datasets, events_per_dataset=args.events_per_dataset,
                                 refresh_seconds=30)
        ledger = stack.ledger()
        with ledger.session() as s:
            from sqlalchemy import func, select

            from microfair.ledger import Dataset, Record, StageEvent

            n_ds = s.scalar(select(func.count()).select_from(Dataset))
            n_ev = s.scalar(select(func.count()).select_from(StageEvent))
            n_rec = s.scalar(select(func.count()).select_from(Record))
            uid = s.scalar(select(Dataset.uid).where(Dataset.state == "qc_done").order_by(Dataset.id.desc()).limit(1))
        print(f"ledger: {n_ds} datasets, {n_ev} stage events, {n_rec} records (SQLite); "
              f"stack up in {time.perf_counter() - t0:.0f} s")
        load_before = os.getloadavg()[0]
        sampler = RssSampler(stack.proc.pid)
        sampler.start()
        try:
            http = requests.Session()
            http.trust_env = False
            http.headers["Authorization"] = f"Bearer {stack.token('admin')}"
            pages = {
                "overview": "/",
                "datasets (page 1)": "/datasets",
                "datasets (page 150)": "/datasets?page=150",
                "datasets (search + stage filter)": "/datasets?q=Study3_&stage=qc&stage_state=failed",
                "datasets (microscope + project)": "/datasets?microscope=leica-sp8&project=NEURO",
                "dataset detail": f"/datasets/{uid}",
                "3-2-1 and retention": "/compliance",
            }
            peer = timed(http, stack.url + "/api/v2/dags?limit=50", args.n)
            peer_med, peer_p95 = statistics.median(peer), p95(peer)
            rows = []
            for name, path in pages.items():
                xs = timed(http, stack.dashboard + path, args.n)
                rows.append((name, statistics.median(xs), p95(xs)))
        finally:
            sampler.stop.set()
            sampler.join()
            stack.stop()
    print(f"\n{'page':36s} {'median ms':>10s} {'p95 ms':>8s} {'p95 / peer p95':>15s}  target p95 < {TARGET_P95_MS:.0f} ms")
    for name, med, p in rows:
        print(f"{name:36s} {med:10.1f} {p:8.1f} {p / peer_p95:15.2f}  {'ok' if p < TARGET_P95_MS else 'MISSED'}")
    print(f"{'peer: Airflow GET /api/v2/dags?limit=50':36s} {peer_med:10.1f} {peer_p95:8.1f} {1.0:15.2f}")
    worst = max(p for _, _, p in rows)
    print(f"\nworst dashboard p95: {worst:.1f} ms ({'target met' if worst < TARGET_P95_MS else 'TARGET MISSED'}); "
          f"{args.n} requests per page after 3 warm-ups, one at a time")
    print(f"peak RSS: API server (all processes) {sampler.peak / 2**20:.0f} MiB; "
          f"this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    print(f"machine: {os.cpu_count()} CPU(s); load average before / after the timed requests: "
          f"{load_before:.1f} / {os.getloadavg()[0]:.1f}; SQLite {sqlite3.sqlite_version}")
    return 0 if worst < TARGET_P95_MS else 1


if __name__ == "__main__":
    sys.exit(main())
