"""Every DAG imports cleanly, is tagged and owned, retries, and does no I/O at parse time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from microfair.airflow_env import REPO, airflow_env

pytestmark = pytest.mark.dag

CHECK = r"""
import json, time
from airflow.dag_processing.dagbag import DagBag
t = time.perf_counter()
bag = DagBag()
out = {"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": {}}
for dag_id, dag in bag.dags.items():
    out["dags"][dag_id] = {
        "tags": sorted(dag.tags), "file": dag.fileloc, "max_active_runs": dag.max_active_runs,
        "tasks": {t.task_id: {"owner": t.owner, "retries": t.retries, "upstream": sorted(t.upstream_task_ids),
                               "downstream": sorted(t.downstream_task_ids)} for t in dag.tasks},
    }
print("BAG " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory) -> dict:
    import json

    home = tmp_path_factory.mktemp("af")
    # No MICROFAIR_CONFIG file at all: DAG files must still parse (no I/O at top level that needs it).
    env = airflow_env(home, home / "missing.yaml")
    env.pop("MICROFAIR_TASK_RETRIES", None)
    proc = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, cwd=REPO)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BAG ")), None)
    assert line, proc.stdout + proc.stderr
    return json.loads(line[4:])


def test_no_import_errors(dagbag):
    assert dagbag["errors"] == {}


def test_every_dag_file_defines_a_dag(dagbag):
    files = {Path(d["file"]).name for d in dagbag["dags"].values()}
    expected = {p.name for p in (REPO / "dags").glob("*.py") if not p.name.startswith("_")}
    assert expected <= files


def test_ingest_dag_shape(dagbag):
    dag = dagbag["dags"]["microfair_ingest"]
    assert dag["max_active_runs"] == 1
    assert {"discover", "ingest_acquisition.collect", "ingest_acquisition.validate",
            "ingest_acquisition.convert", "ingest_acquisition.qc", "report"} <= set(dag["tasks"])


@pytest.mark.parametrize("check", ["tags", "owner", "retries"])
def test_dag_conventions(dagbag, check):
    for dag_id, dag in dagbag["dags"].items():
        if check == "tags":
            assert "microfair" in dag["tags"], dag_id
        for task_id, task in dag["tasks"].items():
            if check == "owner":
                assert task["owner"] == "microfair", (dag_id, task_id)
            # report runs once at the end; a missing landing zone must not hold the run (max_active_runs=1) in retries
            if check == "retries" and task_id not in ("report", "landing_zones_mounted") \
                    and not dag_id.endswith("_retention"):
                assert task["retries"] >= 1, (dag_id, task_id)


@pytest.mark.parametrize("path", sorted(p.name for p in (REPO / "dags").glob("*.py") if not p.name.startswith("_")))
def test_dag_file_parses_with_deprecation_warnings_as_errors(path, tmp_path):
    """Each DAG file, imported alone as the dag-processor does, with no deprecated or future-changing API."""
    env = airflow_env(tmp_path / "af", tmp_path / "missing.yaml")
    proc = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-W", "error::FutureWarning", "-c",
                           "import runpy, sys; runpy.run_path(sys.argv[1], run_name='dag_file')",
                           str(REPO / "dags" / path)], env=env, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _airflow_imports(path: Path) -> list[str]:
    import ast

    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
        elif isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
    return [m for m in out if m == "airflow" or m.startswith("airflow.")]


def test_task_side_code_imports_airflow_only_through_the_sdk():
    """DAG files and the task-side glue (hooks, operators, sensors) use the Task SDK, nothing of Airflow core
    (which warns on 3.x and is not there on a worker that only has the SDK). Lazy imports inside functions
    count: they run in the tasks. The dashboard plugin runs inside the API server and may use core."""
    files = [*(REPO / "dags").glob("*.py"), *(REPO / "include" / "microfair_airflow").rglob("*.py")]
    bad = {str(p.relative_to(REPO)): mods for p in files
           if (mods := [m for m in _airflow_imports(p) if not (m == "airflow.sdk" or m.startswith("airflow.sdk."))])}
    assert bad == {}


def test_a_missing_landing_zone_fails_its_own_task_in_both_ingest_dags(dagbag, tmp_path, monkeypatch) -> None:
    """The other microscopes are still ingested (discover does not fail); ``landing_zones_mounted`` fails the run."""
    import importlib

    from airflow.sdk.exceptions import AirflowFailException

    from microfair.config import init_local_config
    from microfair_airflow import common

    config = init_local_config(tmp_path / "facility")
    monkeypatch.setenv("MICROFAIR_CONFIG", str(config))
    monkeypatch.setattr(common, "_cached", importlib.import_module("functools").lru_cache(maxsize=4)(
        common._cached.__wrapped__))
    cfg, _ = common.facility()
    assert common.require_landing_zones() == len(cfg.landing_zones)
    gone = cfg.landing_zones[0].path
    gone.rename(tmp_path / "unmounted")
    with pytest.raises(AirflowFailException, match="missing or not mounted") as err:
        common.require_landing_zones()
    assert cfg.landing_zones[0].microscope in str(err.value) and str(gone) in str(err.value)
    for dag_id in ("microfair_ingest", "microfair_ingest_batched"):
        task = dagbag["dags"][dag_id]["tasks"]["landing_zones_mounted"]
        assert task["upstream"] == [] and task["downstream"] == []  # beside discover, blocking nothing
        assert task["retries"] == 0
