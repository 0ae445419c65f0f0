"""microfair_ingest through the production-shaped stack: CeleryExecutor, Redis, PostgreSQL.

The test starts a throw-away PostgreSQL cluster (Airflow's metadata DB and the
microfair ledger, as in docker-compose.yaml), a Redis broker, and the same
commands the compose services run: ``airflow db migrate``, ``microfair status``
(creates the ledger schema), ``airflow scheduler``, ``airflow dag-processor``,
``airflow api-server`` and ``airflow celery worker``. It triggers one run through
the REST API, waits (bounded) for it to end, and checks the ledger.

Everything listens on 127.0.0.1 on free ports; every process is stopped at the end.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from microfair.airflow_env import REPO, airflow_env
from microfair.config import init_local_config, load_config
from microfair.ledger import Ledger
from microfair.synthetic import textured_stack, write_ome_tiff
from tests.support.services import Service, free_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.dag, pytest.mark.slow]

PG_BIN = Path(os.environ.get("MICROFAIR_PG_BIN", "/usr/lib/postgresql/15/bin"))
DAY = "2024-05-03"
RUN_TIMEOUT = 1200  # seconds; CI has 2 cores shared with the rest of the suite


# -- PostgreSQL and Redis ---------------------------------------------------------------------------


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} must be installed in CI (.ci/run installs redis-server and postgresql)")
    pytest.skip(f"{what} not installed")


def _as_postgres(cmd: list[str]) -> list[str]:
    """Root cannot run PostgreSQL: run its tools as the ``postgres`` system user."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@contextmanager
def postgres_cluster(log_dir: Path) -> Iterator[str]:
    """A throw-away PostgreSQL 15 cluster on 127.0.0.1; yields its base URL (trust auth, user ``airflow``)."""
    if not (PG_BIN / "initdb").exists():
        _missing(f"PostgreSQL server ({PG_BIN}, apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="microfair-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
    port = free_port()
    log = root / "postgres.log"  # the pytest tmp dir is not writable by the postgres user
    pg_ctl = [str(PG_BIN / "pg_ctl"), "-D", str(data)]
    try:
        subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", "airflow", "--auth=trust",
                                     "-E", "UTF8", "--locale=C.UTF-8"]), check=True, capture_output=True, cwd=root)
        opts = (f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c max_connections=300 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        started = subprocess.run(_as_postgres([*pg_ctl, "-l", str(log), "-w", "-t", "120", "-o", opts, "start"]),
                                 capture_output=True, cwd=root)
        assert started.returncode == 0, f"PostgreSQL did not start: {started.stderr!r}\n{log.read_text()}"
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=port, user="airflow", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            # the same databases deploy/postgres-init.sql creates in the compose stack
            cur.execute((REPO / "deploy/postgres-init.sql").read_text())
            cur.execute("CREATE DATABASE airflow OWNER airflow")
        conn.close()
        yield f"postgresql+psycopg2://airflow@127.0.0.1:{port}"
    finally:
        subprocess.run(_as_postgres([*pg_ctl, "-m", "fast", "-w", "stop"]), capture_output=True, cwd=root)
        if log.exists():
            shutil.copyfile(log, log_dir / "postgres.log")
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def redis_server(log_dir: Path) -> Iterator[str]:
    exe = shutil.which("redis-server")
    if not exe:
        _missing("redis-server (apt-get install redis-server)")
    port = free_port()
    svc = Service("redis", [exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
                            "--dir", str(log_dir)], dict(os.environ), log_dir / "redis.log").start()
    try:
        wait_for("redis", lambda: socket.create_connection(("127.0.0.1", port), 2).close() or True, 60, [svc])
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        svc.stop()


# -- the facility -----------------------------------------------------------------------------------


def build_facility(root: Path) -> tuple[Path, dict[str, Path]]:
    """A local facility with three small OME-TIFFs and one empty file, finished an hour ago."""
    config = init_local_config(root, ("scope-a", "scope-b"))
    data = yaml.safe_load(config.read_text())
    data["schedule"] = None  # only the run this test triggers
    for zone in data["landing_zones"]:
        zone["stability_seconds"] = 2  # quiescence: the scan's own second look, 2 s later
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    cfg = load_config(config)
    a, b = cfg.zone("scope-a").path, cfg.zone("scope-b").path
    files = {
        "good1": write_ome_tiff(a / "DEMO/Cells/e1" / f"{DAY}_DEMO_Cells_ALebon_Control_RAW_v01.ome.tiff",
                                textured_stack((2, 3, 64, 80)), channels=["DAPI", "GFP"]),
        "good2": write_ome_tiff(a / "DEMO/Cells/e1" / f"{DAY}_DEMO_Cells_ALebon_Treated_RAW_v01.ome.tiff",
                                textured_stack((1, 2, 64, 64), seed=2), channels=["GFP"]),
        "good3": write_ome_tiff(b / "DEMO/Cells/e2" / f"{DAY}_DEMO_Cells_ALebon_Control_RAW_v02.ome.tiff",
                                textured_stack((1, 1, 96, 96), seed=3), channels=["DAPI"]),
    }
    empty = a / "DEMO/Cells/e1" / f"{DAY}_DEMO_Cells_ALebon_Empty_RAW_v01.ome.tiff"
    empty.write_bytes(b"")
    files["empty"] = empty
    old = time.time() - 3600
    for p in files.values():
        os.utime(p, (old, old))
    return config, files


# -- the stack --------------------------------------------------------------------------------------


@dataclass
class Stack:
    env: dict[str, str]
    api: str
    ledger_url: str
    home: Path
    services: list[Service]

    def token(self) -> str:
        users = yaml.safe_load(Path(self.env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).read_text())
        r = requests.post(f"{self.api}/auth/token", json={"username": "microfair", "password": users["microfair"]},
                          timeout=30)
        r.raise_for_status()
        return r.json()["access_token"]


def celery_env(home: Path, config: Path, db: str, broker: str, api_port: int) -> dict[str, str]:
    """The environment of every Airflow service: the keys docker-compose.yaml sets, pointed at 127.0.0.1."""
    env = airflow_env(home, config, api_port=api_port, extra={
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"{db}/airflow",
        "AIRFLOW__CELERY__BROKER_URL": broker,
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{db}/airflow",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__WORKERS": "1",
        # secrets: generated per run, passed in the environment (never on a command line)
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__CORE__FERNET_KEY": "",
        "AIRFLOW__CORE__AUTH_MANAGER":
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "microfair:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "MICROFAIR_LEDGER_URL": f"{db}/microfair",
        "MICROFAIR_TASK_RETRIES": "0",
    })
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[tuple[Stack, Path, dict[str, Path]]]:
    root = tmp_path_factory.mktemp("celery-stack")
    logs = root / "logs"
    logs.mkdir()
    config, files = build_facility(root / "facility")
    with postgres_cluster(logs) as db, redis_server(logs) as broker:
        api_port = free_port()
        home = root / "airflow"
        env = celery_env(home, config, db, broker, api_port)
        airflow = [sys.executable, "-m", "airflow"]
        for name, cmd in (("airflow-db-migrate", [*airflow, "db", "migrate"]),
                          ("microfair-status", [str(Path(sys.executable).parent / "microfair"), "status"])):
            proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
            (logs / f"{name}.log").write_text(proc.stdout + proc.stderr)
            assert proc.returncode == 0, f"{name} failed:\n{(proc.stdout + proc.stderr)[-4000:]}"
        services = [
            Service("api-server", [*airflow, "api-server", "--port", str(api_port)], env, logs / "api-server.log"),
            Service("scheduler", [*airflow, "scheduler"], env, logs / "scheduler.log"),
            Service("dag-processor", [*airflow, "dag-processor"], env, logs / "dag-processor.log"),
            Service("celery-worker", [*airflow, "celery", "worker", "--concurrency", "2"], env,
                    logs / "celery-worker.log"),
        ]
        try:
            for s in services:
                s.start()
            api = f"http://127.0.0.1:{api_port}"
            wait_for("the API server", lambda: requests.get(f"{api}/api/v2/monitor/health", timeout=10).ok,
                     300, services, 2)
            yield Stack(env, api, f"{db}/microfair", home, services), config, files
        finally:
            for s in reversed(services):
                s.stop()
            print(f"service logs kept in {logs}")


@pytest.fixture(scope="module")
def finished_run(stack) -> dict:
    st, _, _ = stack
    headers = {"Authorization": f"Bearer {st.token()}"}
    dag_url = f"{st.api}/api/v2/dags/microfair_ingest"
    wait_for("the dag-processor to parse microfair_ingest",
             lambda: requests.get(dag_url, headers=headers, timeout=30).status_code == 200, 600, st.services, 3)
    r = requests.patch(dag_url, json={"is_paused": False}, headers=headers, timeout=30)
    assert r.ok, r.text
    r = requests.post(f"{dag_url}/dagRuns", json={"logical_date": None, "conf": {}}, headers=headers, timeout=30)
    assert r.ok, r.text
    run_id = r.json()["dag_run_id"]

    def ended() -> dict | None:
        nonlocal headers
        resp = requests.get(f"{dag_url}/dagRuns/{run_id}", headers=headers, timeout=30)
        if resp.status_code == 401:  # token expired on a slow machine
            headers = {"Authorization": f"Bearer {st.token()}"}
            return None
        body = resp.json()
        return body if body["state"] in ("success", "failed") else None

    run = wait_for(f"run {run_id} to end", ended, RUN_TIMEOUT, st.services, 5)
    tis = requests.get(f"{dag_url}/dagRuns/{run_id}/taskInstances", params={"limit": 500}, headers=headers,
                       timeout=30).json()["task_instances"]
    run["tasks"] = [{"task_id": t["task_id"], "map_index": t["map_index"], "state": t["state"],
                     "hostname": t.get("hostname"), "queue": t.get("queue")} for t in tis]
    return run


def _states(run: dict, task_id: str) -> list[str]:
    return sorted(str(t["state"]) for t in run["tasks"] if t["task_id"] == task_id)


def _convert_stage_available() -> bool:
    try:
        import microfair_airflow.hooks.dask  # noqa: F401
    except ImportError:
        return False
    return True


def test_the_run_is_executed_by_the_celery_worker(finished_run):
    run = finished_run
    assert _states(run, "discover") == ["success"]
    collect = _states(run, "ingest_acquisition.collect")
    assert collect == ["failed", "success", "success", "success"], collect  # the empty file fails alone
    assert _states(run, "ingest_acquisition.validate").count("success") == 3
    assert _states(run, "report") == ["success"]
    ran = [t for t in run["tasks"] if t["state"] in ("success", "failed")]
    assert ran and all(t["queue"] == "default" and t["hostname"] for t in ran)


def test_the_postgresql_ledger_records_every_acquisition(stack, finished_run):
    st, config, files = stack
    assert st.ledger_url.startswith("postgresql")
    ledger = Ledger(st.ledger_url, migrate=False)
    by_source = {d.source_path: d for d in ledger.datasets()}
    assert set(by_source) == {str(p) for p in files.values()}
    empty = by_source[str(files["empty"])]
    assert empty.state == "quarantined" and "empty file" in empty.reason
    good = [by_source[str(files[k])] for k in ("good1", "good2", "good3")]
    want = ("qc_done",) if _convert_stage_available() else ("validated", "qc_done")
    for ds in good:
        assert ds.state in want, (ds.name, ds.state, ds.reason)
        assert Path(ds.raw_path).is_file() and ledger.get_record(ds.uid, "dublin_core")
    # every stage event carries the Celery run's identity, for re-runs from the Airflow UI
    events = [e for e in ledger.events() if e.stage in ("collect", "validate")]
    assert events and {e.run_id for e in events} == {finished_run["dag_run_id"]}
    assert {e.dag_id for e in events} == {"microfair_ingest"}


def test_the_run_converts_when_the_convert_stage_exists(stack, finished_run):
    if not _convert_stage_available():
        pytest.xfail("include/microfair_airflow/hooks/dask.py (the convert stage) has not landed yet")
    assert finished_run["state"] == "failed"  # the quarantined empty file makes the run red (all_acquisitions_passed)
    assert _states(finished_run, "ingest_acquisition.qc").count("success") == 3
