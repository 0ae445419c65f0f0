"""Environment for running microfair's Airflow on one machine (SQLite, LocalExecutor or `dags test`).

Used by ``make demo`` and by the DAG tests, so both run Airflow the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def airflow_env(home: Path, config: Path, *, api_port: int = 8080, extra: dict[str, str] | None = None) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__CORE__MAX_MAP_LENGTH": "4096",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        "MICROFAIR_CONFIG": str(config),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "include"), env.get("PYTHONPATH", "")])),
        "NO_PROXY": "*",
    })
    env.update(extra or {})
    return env
