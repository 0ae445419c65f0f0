"""A migrated Airflow metadata database (SQLite), made once per test process and copied into each Airflow home.

``airflow db migrate`` on an empty SQLite file runs every migration of Airflow's history: tens of seconds on a
loaded 2-core machine, and the result is the same file every time. :func:`migrated_db` runs it once (in a
temporary folder of this process, removed at exit) and copies the closed file to ``<home>/airflow.db``, the path
:func:`microfair.airflow_env.airflow_env` points ``sql_alchemy_conn`` at. The copy is at the head revision, so
the Airflow processes a test starts on it find nothing to migrate.
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from microfair.airflow_env import REPO, airflow_env

DB_NAME = "airflow.db"  # what airflow_env's sql_alchemy_conn names under AIRFLOW_HOME

_lock = threading.Lock()
_template: Path | None = None


def _migrate_template() -> Path:
    root = Path(tempfile.mkdtemp(prefix="microfair-airflow-db-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    home = root / "airflow"
    env = airflow_env(home, root / "unused.yaml")
    proc = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=900)
    (root / "db-migrate.log").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    if proc.returncode != 0 or not (home / DB_NAME).is_file():
        raise RuntimeError(f"airflow db migrate failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}")
    return home / DB_NAME


def migrated_db(home: Path) -> Path:
    """``<home>/airflow.db``: a copy of the metadata DB ``airflow db migrate`` made once in this process."""
    global _template
    with _lock:
        if _template is None:
            _template = _migrate_template()
    home.mkdir(parents=True, exist_ok=True)
    dest = home / DB_NAME
    if dest.exists():
        raise FileExistsError(f"{dest} exists: migrated_db() is for a fresh Airflow home")
    shutil.copyfile(_template, dest)
    return dest
