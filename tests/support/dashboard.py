"""A dashboard TestClient over a given facility and ledger: Airflow's login and REST API replaced by fakes."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins"))


class _User:
    def get_name(self) -> str:
        return "admin"

    def get_id(self) -> str:
        return "admin"


class _QuietAirflow:
    """Airflow's REST API as the overview and dataset pages use it, with nothing to report."""

    def task_instance_states(self, refs: Any) -> dict:
        return {}

    def failed_task_instances(self, *args: Any, **kwargs: Any) -> list:
        return []

    def dag(self, dag_id: str) -> dict[str, Any]:
        return {"dag_id": dag_id, "is_paused": False, "max_active_runs": 16}

    def active_dag_runs(self, dag_id: str) -> list:
        return []


@contextmanager
def dashboard_client(cfg: Any, ledger: Any, monkeypatch: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from microfair_dashboard import deps
    from microfair_dashboard.app import create_app
    from microfair_dashboard.security import require_reader

    monkeypatch.setenv("AIRFLOW__API__SECRET_KEY", "unit-test-signing-key")
    app = create_app()
    app.state.facility.cfg, app.state.facility.ledger = cfg, ledger
    app.dependency_overrides[require_reader] = lambda: _User()
    app.dependency_overrides[deps.airflow_api] = lambda: _QuietAirflow()
    app.dependency_overrides[deps.clear_permission] = lambda: (lambda user, dag_id: False)
    app.dependency_overrides[deps.has_connection] = lambda: (lambda conn_id: False)
    with TestClient(app, root_path="/microfair") as client:
        yield client
