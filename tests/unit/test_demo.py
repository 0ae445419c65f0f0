"""make demo's Airflow set-up (no Airflow run): airflow.cfg, DAG folders, the UI command, the iRODS stand-in factory."""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from types import SimpleNamespace

import pytest

from microfair import demo
from microfair_airflow import bundle

REPO = Path(__file__).resolve().parents[2]


def test_airflow_cfg_names_the_real_dag_and_plugin_folders_without_examples(tmp_path):
    config, env = demo.prepare(tmp_path / "demo")
    cfg = configparser.ConfigParser(interpolation=None)
    assert cfg.read(tmp_path / "demo" / "airflow" / "airflow.cfg")
    dags, plugins = Path(cfg["core"]["dags_folder"]), Path(cfg["core"]["plugins_folder"])
    assert dags.is_absolute() and plugins.is_absolute()
    assert dags == (REPO / "dags").resolve() and (dags / "microfair_ingest.py").is_file()
    assert plugins == (REPO / "plugins").resolve() and (plugins / "microfair_dashboard_plugin.py").is_file()
    assert cfg.getboolean("core", "load_examples") is False
    assert cfg["database"]["sql_alchemy_conn"] == f"sqlite:///{tmp_path / 'demo' / 'airflow' / 'airflow.db'}"
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(dags) and env["MICROFAIR_CONFIG"] == str(config)


def test_airflow_reads_the_folders_from_the_cfg_alone(tmp_path):
    """What `airflow standalone` sees with only AIRFLOW_HOME set: no AIRFLOW__* variable helps it."""
    demo.prepare(tmp_path / "demo")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["AIRFLOW_HOME"] = str(tmp_path / "demo" / "airflow")
    code = ("import json; from airflow.configuration import conf; print(json.dumps([conf.get('core', 'dags_folder'), "
            "conf.get('core', 'plugins_folder'), conf.getboolean('core', 'load_examples')]))")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [str((REPO / "dags").resolve()),
                                                                  str((REPO / "plugins").resolve()), False]


def test_outside_a_checkout_the_shipped_copies_are_used(tmp_path, monkeypatch):
    shipped = tmp_path / "site-packages" / "microfair_airflow" / "bundle"
    (shipped / "dags").mkdir(parents=True)
    (shipped / "plugins").mkdir()
    (shipped / "dags" / "microfair_ingest.py").write_text("")
    (shipped / "plugins" / "microfair_dashboard_plugin.py").write_text("")
    monkeypatch.setattr(bundle, "CHECKOUT", tmp_path / "no-checkout")
    monkeypatch.setattr(bundle, "BUNDLE", shipped)
    assert demo.airflow_folders() == (shipped / "dags", shipped / "plugins")
    (shipped / "dags" / "microfair_ingest.py").unlink()
    with pytest.raises(FileNotFoundError, match="reinstall the microfair wheel"):
        demo.airflow_folders()


def test_the_ui_command_names_the_venv_airflow_and_puts_its_bin_on_path(tmp_path):
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "airflow").write_text("#!/bin/sh\n")
    text = demo.ui_command(tmp_path / "home", tmp_path / "microfair.yaml", bin_dir)
    export, command = text.splitlines()[:2]
    assert f"AIRFLOW_HOME={tmp_path / 'home'}" in export and f"MICROFAIR_CONFIG={tmp_path / 'microfair.yaml'}" in export
    assert f"PATH={bin_dir}:$PATH" in export  # standalone's components run `airflow` from PATH
    assert command.split()[:2] == [str(bin_dir / "airflow"), "standalone"]


def test_the_standin_session_factory_is_an_entry_point_and_keeps_its_zone(tmp_path, monkeypatch):
    from microfair.standins.irods_session import PersistentSession, factory

    found = {ep.name: ep for ep in entry_points(group="microfair.irods_sessions")}
    assert found["standin"].load() is factory
    conn = SimpleNamespace(login="rods", extra_dejson={"zone": "demoZone", "standin_state": str(tmp_path / "z.pkl")})
    first = factory(conn)
    assert isinstance(first, PersistentSession) and first.zone == "demoZone"
    first.collections.create("/demoZone/home/microfair/DEMO")
    first.cleanup()
    second = factory(conn)  # another task: a new session over the same zone
    assert second.collections.exists("/demoZone/home/microfair/DEMO")
    monkeypatch.delenv("MICROFAIR_IRODS_STANDIN_STATE", raising=False)
    with pytest.raises(ValueError, match="standin_state"):
        factory(SimpleNamespace(login="rods", extra_dejson={}))
