"""Dataverse and Zenodo connections: parsed in plain functions (JSON and URI forms), the hooks' clients and
Test buttons against the stand-ins, never showing the token."""

from __future__ import annotations

import json

import pytest

from microfair.deposit.targets.connections import ConnectionFields, dataverse_target, from_environment, zenodo_target
from microfair.standins.dataverse import DataverseStandin
from microfair.standins.zenodo import ZenodoStandin

TOKEN = "tok-for-the-hook-test-3c1"


def test_connection_from_json_and_uri_forms():
    env = {"AIRFLOW_CONN_DV": json.dumps({"conn_type": "dataverse", "host": "dv.example.org", "password": TOKEN,
                                          "extra": {"collection": "imaging", "direct_upload": "false"}}),
           "AIRFLOW_CONN_ZEN": f"zenodo://:{TOKEN}@sandbox.zenodo.org/?community=microfair&max_files=50"}
    dv = from_environment("dv", env)
    assert dv == ConnectionFields("dv.example.org", "", TOKEN, {"collection": "imaging", "direct_upload": "false"})
    t = dataverse_target(dv)
    assert (t.base_url, t.collection, t.direct_upload, t.max_files_per_request) == (
        "https://dv.example.org", "imaging", False, 1000)
    z = zenodo_target(from_environment("zen", env))
    assert (z.base_url, z.community, z.max_files) == ("https://sandbox.zenodo.org", "microfair", 50)
    assert TOKEN not in repr(t) + repr(z) + repr(dv)
    assert from_environment("missing", env) is None


def _env(monkeypatch, tmp_path, conn_id: str, **fields) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


def test_hooks_build_targets_and_test_buttons_hide_the_token(monkeypatch, tmp_path):
    pytest.importorskip("airflow.sdk")
    from microfair_airflow.hooks.dataverse import DataverseHook
    from microfair_airflow.hooks.zenodo import ZenodoHook

    with DataverseStandin({TOKEN: "me"}, collections={"imaging": {"me"}}) as dv, ZenodoStandin({TOKEN: "me"}) as zs:
        _env(monkeypatch, tmp_path, "dv_ok", conn_type="dataverse", host=dv.url, password=TOKEN,
             extra={"collection": "imaging"})
        ok, message = DataverseHook("dv_ok").test_connection()
        assert ok and message == f"Dataverse at {dv.url}: token of @me, collection imaging"
        assert DataverseHook("dv_ok").get_conn().collection == "imaging"
        _env(monkeypatch, tmp_path, "dv_bad", conn_type="dataverse", host=dv.url, password=TOKEN + "x",
             extra={"collection": "imaging"})
        ok, message = DataverseHook("dv_bad").test_connection()
        assert not ok and "HTTP 401" in message and TOKEN not in message
        _env(monkeypatch, tmp_path, "z_ok", conn_type="zenodo", host=zs.url, password=TOKEN)
        assert ZenodoHook("z_ok").test_connection() == (True, f"Zenodo at {zs.url} accepts the token")
        _env(monkeypatch, tmp_path, "z_bad", conn_type="zenodo", host=zs.url, password="nope-" + TOKEN)
        ok, message = ZenodoHook("z_bad").test_connection()
        assert not ok and "HTTP 401" in message and TOKEN not in message
