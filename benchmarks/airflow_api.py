"""A real Airflow 3 API server with the dashboard plugin over a seeded ledger, for the dashboard benchmark.

Built from the package alone (no test helper): the demo's facility and Airflow home
(:func:`microfair.demo.prepare`, whose ``airflow.cfg`` names the real DAG and plugin folders), the ledger
seeded by :func:`microfair.monitor.seed.seed_ledger`, SimpleAuthManager with one ``admin`` whose
password is made for this run, and ``airflow api-server`` on a free port.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests
import yaml

from microfair.config import load_config
from microfair.demo import AIRFLOW, MICROSCOPES, prepare
from microfair.ledger import Ledger
from microfair.monitor.seed import seed_ledger


@dataclass
class ApiServer:
    url: str
    config_path: Path
    password: str
    proc: subprocess.Popen
    log_path: Path

    @property
    def dashboard(self) -> str:
        return self.url + "/microfair"

    def ledger(self) -> Ledger:
        return Ledger(load_config(self.config_path).ledger.url)

    def token(self, user: str = "admin") -> str:
        r = requests.post(self.url + "/auth/token", json={"username": user, "password": self.password}, timeout=30)
        r.raise_for_status()
        return r.json()["access_token"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_api_server(root: Path, *, n_datasets: int, events_per_dataset: int, refresh_seconds: int = 30) -> ApiServer:
    config, env = prepare(root)
    data = yaml.safe_load(config.read_text())
    data["dashboard"] = {"refresh_seconds": refresh_seconds}
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    seed_ledger(Ledger(load_config(config).ledger.url), list(MICROSCOPES), n_datasets=n_datasets,
                events_target=n_datasets * events_per_dataset)
    port, password = _free_port(), secrets.token_urlsafe(12)
    home = Path(env["AIRFLOW_HOME"])
    (home / "passwords.json").write_text(json.dumps({"admin": password}))
    env.update({
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}", "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16), "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
    })
    migrate = subprocess.run([*AIRFLOW, "db", "migrate"], env=env, cwd=root, capture_output=True, text=True)
    if migrate.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{migrate.stderr[-3000:]}")
    log_path = root / "api-server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([*AIRFLOW, "api-server", "--port", str(port), "--host", "127.0.0.1"], env=env,
                                cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = ApiServer(f"http://127.0.0.1:{port}", config, password, proc, log_path)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"api-server exited ({proc.returncode}); see {log_path}")
        try:
            if requests.get(server.url + "/api/v2/monitor/health", timeout=2).status_code == 200:
                return server
        except requests.RequestException:
            pass
        time.sleep(1)
    server.stop()
    raise RuntimeError(f"api-server did not answer within 180 s; see {log_path}")
