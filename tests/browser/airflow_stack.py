"""A real Airflow 3 API server over a real ingest and a seeded ledger, for the dashboard's browser and HTTP tests.

* its own ``AIRFLOW_HOME`` (SQLite) in a temporary folder, with a copy of the session's migrated metadata DB
  (:func:`tests.support.airflow_db.migrated_db`: ``airflow db migrate`` runs once per test process);
* SimpleAuthManager with an ``admin`` and a ``viewer`` (known passwords, in a users file);
* a tiny DAG whose mapped task fails at map index 1 and writes its ledger events with
  the task instance's ``dag_id / run_id / task_id / map_index`` (run by ``airflow dags test``);
* the ledger seeded with synthetic datasets besides, then (``real_ingest=True``) a few synthetic
  acquisitions taken through the real ingest functions (:mod:`tests.support.real_ingest`):
  one reaches QC with thumbnails, one is flagged for its name, two are quarantined;
* ``airflow api-server`` on a free port with ``AIRFLOW__API__BASE_URL`` to match;
* ``extra_env`` on top (e.g. ``AIRFLOW__CORE__TEST_CONNECTION``), for every Airflow command and the server.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from microfair.airflow_env import REPO, airflow_env
from microfair.config import init_local_config, load_config
from microfair.ledger import Ledger
from microfair.monitor.seed import seed_ledger
from tests.support.airflow_db import migrated_db

DAG_ID = "microfair_test_rerun"
FAILED_MAP_INDEX = 1
PASSWORDS = {"admin": "admin-" + secrets.token_hex(4), "viewer": "viewer-" + secrets.token_hex(4)}
#: The iRODS connection's password: it makes the iRODS stage "configured", and must appear on no page.
IRODS_PASSWORD = "irods-" + secrets.token_urlsafe(12)

TEST_DAG = '''
"""Test DAG for the dashboard: mapped task 'collect' fails at map index 1 and records it in the ledger."""
from airflow.sdk import dag, task


@dag(dag_id="%(dag_id)s", schedule=None, catchup=False, tags=["microfair", "test"])
def microfair_test_rerun():
    @task
    def acquisitions():
        return [0, 1, 2]

    @task(retries=0)
    def collect(i: int):
        from airflow.sdk import get_current_context
        from microfair.config import load_config
        from microfair.ledger import Ledger, RunContext

        ti = get_current_context()["ti"]
        cfg = load_config()
        ledger = Ledger(cfg.ledger.url)
        uid = f"RERUN{i:03d}"
        ledger.upsert_dataset(uid, microscope=cfg.landing_zones[0].microscope, project="DEMO",
                              source_path=f"/landing/{uid}.czi", name=f"2026-01-0{i + 1}_DEMO_Rerun_T_C_RAW_v01.czi",
                              state="discovered", size_bytes=1000 + i)
        with ledger.stage(uid, "collect", RunContext(ti.dag_id, ti.run_id, ti.task_id, ti.map_index)):
            if i == %(fail)d:
                raise OSError("truncated CZI: the acquisition PC was still writing it")
        ledger.update(uid, state="collected")
        return i

    collect.expand(i=acquisitions())


microfair_test_rerun()
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class AirflowStack:
    home: Path
    port: int
    env: dict[str, str]
    config_path: Path
    run_id: str | None = None
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    tokens: dict[str, str] = field(default_factory=dict)
    ingested: Any = None  # tests.support.real_ingest.Ingested, with real_ingest=True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dashboard(self) -> str:
        return self.url + "/microfair"

    def ledger(self) -> Ledger:
        return Ledger(load_config(self.config_path).ledger.url)

    def token(self, user: str) -> str:
        if user not in self.tokens:
            r = requests.post(self.url + "/auth/token", json={"username": user, "password": PASSWORDS[user]},
                              timeout=30)
            r.raise_for_status()
            self.tokens[user] = r.json()["access_token"]
        return self.tokens[user]

    def api(self, method: str, path: str, user: str = "admin", **kw) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token(user)}", **kw.pop("headers", {})}
        return requests.request(method, self.url + "/api/v2" + path, headers=headers, timeout=30, **kw)

    def task_instances(self) -> dict[int, dict]:
        r = self.api("GET", f"/dags/{DAG_ID}/dagRuns/{self.run_id}/taskInstances/collect/listMapped")
        r.raise_for_status()
        return {t["map_index"]: t for t in r.json()["task_instances"]}

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def _run(cmd: list[str], env: dict[str, str], log: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    log.write_text(f"$ {' '.join(cmd)}\n{proc.stdout}\n--- stderr ---\n{proc.stderr}")
    return proc


def start_stack(root: Path, *, n_datasets: int = 120, events_per_dataset: int = 8,
                refresh_seconds: int = 2, real_ingest: bool = False,
                extra_env: dict[str, str] | None = None) -> AirflowStack:
    root.mkdir(parents=True, exist_ok=True)
    config_path = init_local_config(root / "facility", ("zeiss-lsm980", "leica-sp8"))
    cfg = yaml.safe_load(config_path.read_text())
    # The dashboard calls the same (one-worker) API server: a generous timeout, so that a busy machine
    # slows the pages down rather than turning Airflow's answers into "unreachable".
    cfg["dashboard"] = {"refresh_seconds": refresh_seconds, "api_timeout_seconds": 60}
    config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    home = root / "airflow"
    dags = root / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    (dags / f"{DAG_ID}.py").write_text(TEST_DAG % {"dag_id": DAG_ID, "fail": FAILED_MAP_INDEX})
    port = free_port()
    passwords = home / "passwords.json"
    home.mkdir(parents=True, exist_ok=True)
    passwords.write_text(json.dumps(PASSWORDS))
    env = airflow_env(home, config_path, api_port=port, extra={
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__API__EXPOSE_CONFIG": "False",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        # A connection with a secret (never shown); there is no BioStudies connection, so "deposit" stays
        # "not configured" until the ledger has deposit events.
        "AIRFLOW_CONN_IRODS_DEFAULT": json.dumps({"conn_type": "generic", "host": "127.0.0.1", "port": 1247,
                                                  "login": "rods", "password": IRODS_PASSWORD,
                                                  "extra": {"zone": "tempZone"}}),
        "PYTHONPATH": os.pathsep.join([str(REPO / "include"), str(REPO / "plugins"), os.environ.get("PYTHONPATH", "")]),
        **(extra_env or {}),
    })
    # The seeded history first, so the test DAG's datasets are the newest.
    ledger = Ledger(load_config(config_path).ledger.url)
    seed_ledger(ledger, ["zeiss-lsm980", "leica-sp8"], n_datasets=n_datasets, events_target=n_datasets * events_per_dataset)
    ingested = None
    if real_ingest:  # before the API server starts, as a facility's ledger would be
        from tests.support.real_ingest import ingest_samples

        ingested = ingest_samples(load_config(config_path), ledger)
    airflow = [sys.executable, "-m", "airflow"]
    migrated_db(home)
    # `dags test` writes the DAGs of its bundle to the metadata DB itself (as `dags reserialize` would), so
    # the API server knows the test DAG and its run.
    test = _run(airflow + ["dags", "test", DAG_ID], env, root / "dags-test.log")
    stack = AirflowStack(home, port, env, config_path, ingested=ingested)
    events = [e for e in ledger.events(stage="collect") if e.dag_id == DAG_ID and e.state == "failed"]
    if len(events) != 1:
        raise RuntimeError(f"the test DAG should leave exactly one failed collect event, found {len(events)} "
                           f"(exit {test.returncode}); see {root / 'dags-test.log'}")
    stack.run_id = events[0].run_id
    stack.log_path = root / "api-server.log"
    log = open(stack.log_path, "w")
    stack.proc = subprocess.Popen(airflow + ["api-server", "--port", str(port), "--host", "127.0.0.1"], env=env,
                                  cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if stack.proc.poll() is not None:
            raise RuntimeError(f"api-server exited ({stack.proc.returncode}); see {stack.log_path}")
        try:
            if requests.get(stack.url + "/api/v2/monitor/health", timeout=2).status_code == 200:
                return stack
        except requests.RequestException:
            pass
        time.sleep(1)
    stack.stop()
    raise RuntimeError(f"api-server did not answer within 180 s; see {stack.log_path}")
