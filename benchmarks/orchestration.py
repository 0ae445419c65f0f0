"""Orchestration overhead of microfair_ingest over many small acquisitions.

Builds a landing zone of N tiny OME-TIFFs (default 1,000), then measures, each in a fresh process on its own
copy of the facility:

* **peer (plain loop)**: ``scan`` then, per acquisition, ``collect`` → ``validate`` [→ ``convert`` → ``qc``]
  called directly in one Python process: the same domain work with no orchestration;
* **dag**: the real ``microfair_ingest`` DAG with ``dag.test()`` (SQLite, as ``make demo`` and the DAG
  tests run it): one mapped task-group instance per acquisition.

It prints wall time, per-acquisition time, the per-acquisition orchestration overhead
((dag − peer) / N), the ratio dag / peer, task-state counts and the peak RSS of each process.

    .venv/bin/python benchmarks/orchestration.py --n 1000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DAY = "2024-06-01"


def build(root: Path, n: int) -> Path:
    """A facility with ``n`` tiny OME-TIFFs spread over projects/experiments, finished an hour ago."""
    import yaml

    from microfair.config import init_local_config, load_config
    from microfair.synthetic import textured_stack, write_ome_tiff

    config = init_local_config(root, ("scope-a",))
    data = yaml.safe_load(config.read_text())
    data["schedule"] = None
    data["landing_zones"][0]["stability_seconds"] = 600
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    zone = load_config(config).zone("scope-a").path
    stack = textured_stack((1, 1, 32, 32), seed=0)
    old = time.time() - 3600
    for i in range(n):
        p = write_ome_tiff(zone / "DEMO" / "Bench" / f"e{i // 100:03d}"
                           / f"{DAY}_DEMO_Bench_ALebon_Tile{i:05d}_RAW_v01.ome.tiff", stack, channels=["GFP"])
        os.utime(p, (old, old))
    return config


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_loop(config: Path, stages: list[str]) -> dict:
    """The peer: the domain functions in a plain loop, one process, no Airflow."""
    from microfair import ingest
    from microfair.collect import Acquisition, collect, scan
    from microfair.config import load_config
    from microfair.ledger import Ledger

    cfg = load_config(config)
    ledger = Ledger.from_config(cfg)
    client = None
    if "convert" in stages:  # the same shared scheduler the DAG's convert tasks use
        from distributed import Client

        conn = json.loads(os.environ["AIRFLOW_CONN_DASK_DEFAULT"])
        client = Client(f"tcp://{conn['host']}:{conn['port']}", timeout=60)
    t0 = time.perf_counter()
    states: Counter[str] = Counter()
    for acq_dict in [a.to_dict() for a in scan(cfg, ledger).ready]:
        acq = Acquisition(**acq_dict)
        state = collect(cfg, ledger, acq)
        if state == "collected" and "validate" in stages:
            state = ingest.validate_dataset(cfg, ledger, acq.uid)
        if state == "validated" and "convert" in stages:
            state = ingest.convert_dataset(cfg, ledger, acq.uid, client=client)
        if state == "converted" and "qc" in stages:
            state = ingest.qc_dataset(cfg, ledger, acq.uid)
        states[state] += 1
    return {"seconds": time.perf_counter() - t0, "states": dict(states), "peak_rss_mb": _peak_rss_mb()}


def run_dag(config: Path, dag_id: str = "microfair_ingest") -> dict:
    """The real DAG with dag.test() in this process (AIRFLOW_HOME etc. come from the environment)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag()
    assert not bag.import_errors, bag.import_errors
    dag = bag.get_dag(dag_id)
    t0 = time.perf_counter()
    run = dag.test()
    seconds = time.perf_counter() - t0
    tis = run.get_task_instances()
    by_task: dict[str, Counter[str]] = {}
    for ti in tis:
        by_task.setdefault(ti.task_id, Counter())[str(ti.state)] += 1
    return {"seconds": seconds, "run_state": str(run.state), "task_instances": len(tis),
            "tasks": {k: dict(v) for k, v in by_task.items()}, "peak_rss_mb": _peak_rss_mb()}


def _child(mode: str, config: Path, env: dict[str, str], stages: list[str], log: Path,
           dag_id: str = "microfair_ingest") -> dict:
    cmd = [sys.executable, __file__, f"--child={mode}", f"--config={config}", f"--stages={','.join(stages)}",
           f"--dag-id={dag_id}"]
    with open(log, "w") as out:
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=out, text=True, cwd=REPO)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        raise SystemExit(f"{mode} gave no result (exit {proc.returncode}); see {log}")
    return json.loads(lines[-1][len("RESULT "):])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="number of acquisitions (default 1000)")
    ap.add_argument("--workdir", type=Path, help="keep the facilities and logs here (default: a temp dir)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--stages", default="", help=argparse.SUPPRESS)
    ap.add_argument("--dag-id", default="microfair_ingest", help=argparse.SUPPRESS)
    ap.add_argument("--dags", default="microfair_ingest,microfair_ingest_batched",
                    help="DAGs to measure, comma-separated (default: the per-acquisition and the batched DAG)")
    ap.add_argument("--batch-size", type=int, default=50, help="acquisitions per batch (batched DAG)")
    args = ap.parse_args(argv)
    if args.child:
        stages = [s for s in args.stages.split(",") if s]
        result = run_loop(args.config, stages) if args.child == "loop" else run_dag(args.config, args.dag_id)
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    from microfair.airflow_env import airflow_env

    work = args.workdir or Path(tempfile.mkdtemp(prefix="microfair-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    from microfair import ingest

    if hasattr(ingest, "convert_dataset") and hasattr(ingest, "qc_dataset"):
        stages = ["validate", "convert", "qc"]
    else:  # the DAG's convert tasks then fail (stage not written yet); the peer stops at validate
        stages = ["validate"]
    dag_ids = [d for d in args.dags.split(",") if d]
    print(f"building {1 + len(dag_ids)} × {args.n} tiny acquisitions in {work} …", flush=True)
    t0 = time.perf_counter()
    cfg_loop = build(work / "loop", args.n)
    cfgs = {d: build(work / d, args.n) for d in dag_ids}
    print(f"  built in {time.perf_counter() - t0:.0f}s; domain stages compared: collect, {', '.join(stages)}")

    results: dict[str, dict] = {}
    # As in production (docker-compose.yaml): the convert tasks reach one long-running dask scheduler through
    # the dask_default connection, instead of each task starting a local cluster.
    bin_dir = Path(sys.executable).parent
    port = _free_port()
    dask_logs = open(work / "dask.log", "w")  # noqa: SIM115
    cluster = [subprocess.Popen([str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                 "--dashboard-address", f"127.0.0.1:{_free_port()}"], stdout=dask_logs,
                                stderr=subprocess.STDOUT)]
    cluster.append(subprocess.Popen([str(bin_dir / "dask"), "worker", f"tcp://127.0.0.1:{port}", "--host",
                                     "127.0.0.1", "--nworkers", "1", "--nthreads", "2", "--dashboard-address",
                                     f"127.0.0.1:{_free_port()}"], stdout=dask_logs, stderr=subprocess.STDOUT))
    dask_conn = json.dumps({"conn_type": "generic", "host": "127.0.0.1", "port": port})
    try:
        loop_env = {**os.environ, "MICROFAIR_CONFIG": str(cfg_loop), "AIRFLOW_CONN_DASK_DEFAULT": dask_conn}
        loop = results["loop"] = _child("loop", cfg_loop, loop_env, stages, work / "loop.log")
        print(f"peer (plain loop, one process): {loop['seconds']:.1f}s, {loop['seconds'] / args.n * 1000:.1f} ms "
              f"per acquisition, states {loop['states']}, peak RSS {loop['peak_rss_mb']:.0f} MB", flush=True)
        _run_dags(args, work, dag_ids, cfgs, stages, loop, results, dask_conn)
    finally:
        for proc in reversed(cluster):
            proc.terminate()
            proc.wait(timeout=60)
        dask_logs.close()
    print(json.dumps({"n": args.n, "stages": stages, **results}))
    if not args.workdir:
        subprocess.run(["chmod", "-R", "u+w", str(work)], check=False)
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_dags(args, work: Path, dag_ids: list[str], cfgs: dict[str, Path], stages: list[str], loop: dict,
              results: dict[str, dict], dask_conn: str) -> None:
    from microfair.airflow_env import airflow_env

    for dag_id in dag_ids:
        home = work / f"airflow-{dag_id}"
        env = airflow_env(home, cfgs[dag_id], extra={"MICROFAIR_TASK_RETRIES": "0",
                                                      "MICROFAIR_BATCH_SIZE": str(args.batch_size),
                                                      "AIRFLOW_CONN_DASK_DEFAULT": dask_conn,
                                                      "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING"})
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True,
                       cwd=REPO)
        dag = _child("dag", cfgs[dag_id], env, stages, work / f"{dag_id}.log", dag_id)
        results[dag_id] = dag
        print(f"{dag_id} (dag.test on SQLite): {dag['seconds']:.1f}s, "
              f"{dag['seconds'] / args.n * 1000:.1f} ms per acquisition, run {dag['run_state']}, "
              f"{dag['task_instances']} task instances, peak RSS {dag['peak_rss_mb']:.0f} MB")
        for task_id, counts in sorted(dag["tasks"].items()):
            print(f"    {task_id:<32} {counts}")
        overhead = (dag["seconds"] - loop["seconds"]) / args.n
        dag["overhead_ms_per_acquisition"] = overhead * 1000
        print(f"  orchestration overhead: {overhead * 1000:.0f} ms per acquisition "
              f"({(dag['seconds'] - loop['seconds']) / dag['task_instances'] * 1000:.0f} ms per task instance); "
              f"ratio {dag_id} / plain loop = {dag['seconds'] / loop['seconds']:.1f}×", flush=True)


if __name__ == "__main__":
    sys.exit(main())
