"""Run a DAG with dag.test() in a subprocess, and read the task states."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from microfair.airflow_env import REPO, airflow_env


def run_dag(dag_id: str, home: Path, config: Path, *, conf: dict | None = None,
            extra_env: dict[str, str] | None = None, timeout: int = 600) -> dict:
    """Run ``dag_id`` with dag.test() in a subprocess; return the run state and task states."""
    env = airflow_env(home, config, extra={"MICROFAIR_TASK_RETRIES": "0", **(extra_env or {})})
    cmd = [sys.executable, str(REPO / "tests/dags/run_dag.py"), dag_id]
    if conf:
        cmd.append(json.dumps(conf))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    log = home / f"{dag_id}.log"
    log.write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
            result["log"] = proc.stdout + proc.stderr
            return result
    raise AssertionError(f"dag.test() of {dag_id} gave no result (exit {proc.returncode}); log in {log}:\n"
                         + (proc.stdout + proc.stderr)[-4000:])


def states(result: dict, task_id: str) -> dict[int, str]:
    return {t["map_index"]: t["state"] for t in result["tasks"] if t["task_id"] == task_id}
