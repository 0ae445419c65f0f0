"""The Dataverse/Zenodo tasks of microfair_deposit: a refusal no retry can fix fails the task at once
(AirflowFailException, no retry storm); a 5xx that outlasts the client's retries is left to Airflow's retry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from microfair.deposit.targets import TransientError
from microfair.standins.zenodo import ZenodoStandin
from tests.support.synthetic_ingest import ingest_synthetic

pytest.importorskip("airflow.sdk")
pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "include/microfair/deposit/example_study.yaml"
TOKEN = "task-zenodo-token-never-shown"


def test_refusals_fail_the_task_and_transient_errors_are_retried(facility_config, ledger, monkeypatch, tmp_path):
    from airflow.sdk.exceptions import AirflowFailException

    import microfair_airflow.common as common
    from microfair_airflow.operators.repository import deposit_target, validate_target

    facility_config.biostudies.retries, facility_config.biostudies.backoff_seconds = 1, 0.01
    ingest_synthetic(facility_config, ledger, n=1)
    monkeypatch.setattr(common, "facility", lambda *a: (facility_config, ledger))
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    params = {"study_file": str(EXAMPLE), "project": "DEMO", "study": "", "target": "zenodo", "publish": True}
    ok = validate_target(params, {})
    assert ok["datasets"] == [ledger.datasets()[0].uid] and ok["target"] == "zenodo" and ok["files"] >= 2
    with pytest.raises(AirflowFailException, match="license"):
        validate_target({**params, "study_file": str(_without_licence(tmp_path))}, {})
    with ZenodoStandin({TOKEN: "me"}) as zs:
        monkeypatch.setenv("AIRFLOW_CONN_ZENODO_DEFAULT", json.dumps({"host": zs.url, "password": "wrong-" + TOKEN}))
        with pytest.raises(AirflowFailException, match="RepositoryAuthError.*HTTP 401") as info:
            deposit_target(params, {})
        assert TOKEN not in str(info.value)
        monkeypatch.setenv("AIRFLOW_CONN_ZENODO_DEFAULT", json.dumps({"host": zs.url, "password": TOKEN}))
        zs.fail_next("/api/files/", 2, "503")  # more than the one retry configured
        with pytest.raises(TransientError):
            deposit_target(params, {})
        out = deposit_target(params, {})  # Airflow's retry: the same draft, published
        assert out["action"] == "published" and out["pid"] == zs.doi(zs.published()[0]) and len(zs.depositions) == 1


def _without_licence(tmp_path: Path) -> Path:
    import yaml

    data = yaml.safe_load(EXAMPLE.read_text())
    del data["license"]
    p = tmp_path / "no-licence.yaml"
    p.write_text(yaml.safe_dump(data))
    return p
