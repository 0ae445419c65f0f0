"""The deployed path on one machine: ``airflow scheduler`` + ``dag-processor`` + ``api-server`` on LocalExecutor.

The environment is the one ``make demo`` prints (:func:`microfair.airflow_env.airflow_env`: SQLite metadata DB,
``dags_folder=<repo>/dags``, ``plugins_folder=<repo>/plugins``, ``MICROFAIR_CONFIG``,
``AIRFLOW__API__BASE_URL`` on the chosen port), with LocalExecutor, as ``airflow standalone`` runs it
(Airflow 3 accepts SQLite with LocalExecutor; standalone itself does so), plus SimpleAuthManager with one
admin user whose password is generated per run and kept in a users file.

Use :func:`local_airflow` as a context manager (or the ``local_airflow_stack`` fixture factory in a
conftest) and drive it through the REST API as the UI does::

    with local_airflow(tmp / "af", config) as stack:
        run = stack.trigger_and_wait("microfair_ingest")
        html = stack.get("/microfair/").text

Every process is in its own process group and is stopped on exit; logs stay in ``<root>/logs``.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from microfair.airflow_env import REPO, airflow_env
from tests.support.airflow_db import migrated_db
from tests.support.services import Service, free_port, wait_for

USER = "microfair"
START_TIMEOUT = 300  # seconds for the API server to answer on a loaded 2-core machine
PARSE_TIMEOUT = 600


@dataclass
class LocalAirflow:
    """A running LocalExecutor stack; REST helpers that log in as the admin user."""

    root: Path
    env: dict[str, str]
    port: int
    password: str
    services: list[Service]
    _token: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token(self, *, fresh: bool = False) -> str:
        if self._token is None or fresh:
            r = requests.post(f"{self.url}/auth/token", json={"username": USER, "password": self.password},
                              timeout=30)
            r.raise_for_status()
            self._token = r.json()["access_token"]
        return self._token

    def browser_cookies(self) -> list[dict[str, str]]:
        """The Airflow UI's login cookie for a browser context (Playwright ``context.add_cookies(...)``)."""
        from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN

        return [{"name": COOKIE_NAME_JWT_TOKEN, "value": self.token(), "url": self.url}]

    def request(self, method: str, path: str, **kw: Any) -> requests.Response:
        """``path`` below the server root (``/api/v2/...``, ``/microfair/...``), with the bearer token."""
        for fresh in (False, True):  # one retry with a new token when it expired on a slow machine
            headers = {"Authorization": f"Bearer {self.token(fresh=fresh)}", **kw.get("headers", {})}
            r = requests.request(method, self.url + path, timeout=60, **{**kw, "headers": headers})
            if r.status_code != 401:
                return r
        return r

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def wait_for_dag(self, dag_id: str) -> None:
        """Wait for the dag-processor to parse ``dag_id``, then unpause it (the UI's toggle)."""
        wait_for(f"the dag-processor to parse {dag_id}",
                 lambda: self.get(f"/api/v2/dags/{dag_id}").status_code == 200, PARSE_TIMEOUT, self.services, 3)
        r = self.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
        assert r.ok, r.text

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """``POST /api/v2/dags/{dag_id}/dagRuns`` as the UI's Trigger button does; returns the run id."""
        r = self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf or {}})
        assert r.ok, r.text
        return r.json()["dag_run_id"]

    def wait_run(self, dag_id: str, run_id: str, timeout: float = 1200) -> dict[str, Any]:
        """Wait (bounded) for the run to end; the run's JSON with its task instances under ``tasks``."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"

        def ended() -> dict | None:
            body = self.get(path).json()
            return body if body["state"] in ("success", "failed") else None

        run = wait_for(f"run {run_id} of {dag_id} to end", ended, timeout, self.services, 5)
        tis = self.get(f"{path}/taskInstances", params={"limit": 500}).json()["task_instances"]
        run["tasks"] = [{"task_id": t["task_id"], "map_index": t["map_index"], "state": t["state"],
                         "try_number": t.get("try_number")} for t in tis]
        return run

    def trigger_and_wait(self, dag_id: str, timeout: float = 1200) -> dict[str, Any]:
        return self.wait_run(dag_id, self.trigger(dag_id), timeout)

    def logs(self) -> str:
        return "\n".join(f"--- {s.name} ({s.log}) ---\n{s.tail(3000)}" for s in self.services)


def local_env(home: Path, config: Path, port: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The facility's environment (what ``make demo`` prints) with LocalExecutor and a generated admin."""
    users = home / "passwords.json"
    env = airflow_env(home, config, api_port=port, extra={
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
        "AIRFLOW__CORE__AUTH_MANAGER":
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(users),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "MICROFAIR_TASK_RETRIES": "0",
        **(extra or {}),
    })
    # the services find each other's `airflow` on PATH (the venv need not be activated)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


@contextmanager
def local_airflow(root: Path, config: Path, *, extra_env: dict[str, str] | None = None) -> Iterator[LocalAirflow]:
    """A fresh metadata DB under ``root`` (a copy of the session's migrated one), start the three services,
    yield the running stack."""
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    home = root / "airflow"
    port = free_port()
    env = local_env(home, config, port, extra_env)
    password = "pw-" + secrets.token_urlsafe(12)
    Path(env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).write_text(json.dumps({USER: password}))
    airflow = [sys.executable, "-m", "airflow"]
    migrated_db(home)  # what `airflow db migrate` leaves, made once per test process
    # the ledger's tables, as the deployment's first `microfair status` makes them
    proc = subprocess.run([str(Path(sys.executable).parent / "microfair"), "status"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    (logs / "microfair-status.log").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, f"microfair status failed:\n{(proc.stdout + proc.stderr)[-4000:]}"
    services = [
        Service("api-server", [*airflow, "api-server", "--port", str(port)], env, logs / "api-server.log"),
        Service("scheduler", [*airflow, "scheduler"], env, logs / "scheduler.log"),
        Service("dag-processor", [*airflow, "dag-processor"], env, logs / "dag-processor.log"),
    ]
    try:
        for s in services:
            s.start()
        stack = LocalAirflow(root, env, port, password, services)
        wait_for("the API server", lambda: requests.get(f"{stack.url}/api/v2/monitor/health", timeout=10).ok,
                 START_TIMEOUT, services, 2)
        yield stack
    finally:
        for s in reversed(services):
            s.stop()
        print(f"service logs kept in {logs}")
