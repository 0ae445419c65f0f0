"""The wheel stands alone: built from the checkout, installed into a fresh venv, it runs the demo elsewhere.

The venv gets the locked dependencies (``uv pip install -r requirements.lock``, from uv's cache when it
has them) and the wheel with ``--no-deps``; the demo then runs from a folder outside the checkout with no
``PYTHONPATH``, so neither ``include/`` nor ``dags/`` nor ``plugins/`` of the checkout can help it: the DAG
files and the dashboard plugin must come from the package (microfair_airflow.bundle).
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from microfair.ledger import Ledger

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
BUILD_INPUTS = ("pyproject.toml", "README.md", "requirements.lock", "include", "dags", "plugins")


def _uv() -> str:
    uv = shutil.which("uv", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if not uv:
        pytest.skip("uv is not installed (make install puts it into .venv)")
    return uv


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


def _uv_cached_first(args: list[str], **kw) -> subprocess.CompletedProcess:
    """uv from its cache (offline, fast); from the index when the cache lacks something."""
    proc = _run([_uv(), *args, "--offline"], **kw)
    return proc if proc.returncode == 0 else _run([_uv(), *args], **kw)


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # a copy, so that the build leaves no build/ or egg-info in the checkout
    for name in BUILD_INPUTS:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "node_modules", "*.egg-info"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    build = _uv_cached_first(["build", "--wheel", "-o", str(tmp / "dist"), str(src)], cwd=tmp, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = next((tmp / "dist").glob("microfair-*.whl"))
    venv = tmp / "venv"
    made = _run([_uv(), "venv", "-q", "--python", sys.executable, str(venv)], cwd=tmp, timeout=300)
    assert made.returncode == 0, made.stderr
    py = venv / "bin" / "python"
    deps = _uv_cached_first(["pip", "install", "-q", "--python", str(py), "-r", str(REPO / "requirements.lock")],
                            cwd=tmp, timeout=1200)
    assert deps.returncode == 0, deps.stderr[-3000:]
    pkg = _run([_uv(), "pip", "install", "-q", "--python", py, "--no-deps", wheel], cwd=tmp, timeout=300)
    assert pkg.returncode == 0, pkg.stderr
    return venv


def _clean_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIRFLOW", "MICROFAIR", "PYTHON", "VIRTUAL_ENV"))}
    env["HOME"] = str(tmp)
    return env


def test_the_installed_wheel_runs_the_demo_outside_the_checkout(wheel_venv, tmp_path):
    py = wheel_venv / "bin" / "python"
    where = _run([py, "-c", "import sys, microfair, microfair_airflow, microfair.standins; "
                            "print(microfair.__file__); print(microfair_airflow.__file__); print(*sys.path, sep='\\n')"],
                 cwd=tmp_path, env=_clean_env(tmp_path), timeout=120)
    assert where.returncode == 0, where.stderr
    assert not any(line.startswith(str(REPO)) for line in where.stdout.splitlines()), where.stdout

    proc = _run([py, "-m", "microfair.demo", "--root", tmp_path / "demo", "--quick"], cwd=tmp_path,
                env=_clean_env(tmp_path), timeout=1500)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    # the run itself may end "with failed tasks": the demo's bad inputs fail validation on purpose
    assert "microfair_ingest: " in out, out[-4000:]

    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(tmp_path / "demo" / "airflow" / "airflow.cfg")
    site = Path(where.stdout.splitlines()[1]).parent.parent  # site-packages of the fresh venv
    for key, marker in (("dags_folder", "microfair_ingest.py"), ("plugins_folder", "microfair_dashboard_plugin.py")):
        folder = Path(cfg["core"][key])
        assert folder.is_relative_to(site) and (folder / marker).is_file(), (key, folder)
    assert cfg.getboolean("core", "load_examples") is False
    assert f"{wheel_venv / 'bin' / 'airflow'} standalone" in out  # the printed UI command uses this venv

    # Airflow loads the dashboard plugin from the installed copy (its FastAPI app is built at import).
    env = {**_clean_env(tmp_path), "AIRFLOW_HOME": str(tmp_path / "demo" / "airflow"),
           "MICROFAIR_CONFIG": str(tmp_path / "demo" / "facility" / "microfair.yaml")}
    plugins = _run([py, "-m", "airflow", "plugins", "-o", "json"], cwd=tmp_path, env=env, timeout=300)
    assert plugins.returncode == 0, plugins.stderr[-3000:]
    loaded = {p["name"]: p for p in json.loads(plugins.stdout[plugins.stdout.index("["):])}
    assert loaded["microfair_dashboard"]["fastapi_apps"], loaded

    ledger = Ledger(f"sqlite:///{tmp_path / 'demo' / 'facility' / 'ledger.db'}")
    states = {d.name: d.state for d in ledger.datasets()}
    done = sorted(name for name, state in states.items() if state == "qc_done")
    assert len(done) == 3, states  # the OME-TIFF, the CZI and the misnamed (flagged) OME-TIFF
    assert sum(state == "quarantined" for state in states.values()) == 4, states  # the four bad inputs

    # issue 14: every dataset the demo ingested has a valid RO-Crate in its OME-Zarr root and its reports
    from microfair.config import load_config
    from microfair.ingest import report_dir
    from microfair.provenance import CRATE_NAME, check_crate

    demo_cfg = load_config(tmp_path / "demo" / "facility" / "microfair.yaml")
    for ds in (d for d in ledger.datasets() if d.state == "qc_done"):
        for path in (Path(ds.zarr_path) / CRATE_NAME, report_dir(demo_cfg, ds) / CRATE_NAME):
            assert check_crate(json.loads(path.read_text(encoding="utf-8"))) == [], (ds.name, path)
