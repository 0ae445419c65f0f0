"""microfair_irods with dag.test(): skipped cleanly without a connection; registers through the stand-in."""

from __future__ import annotations

import json
import os
import pickle

import pytest

from microfair.config import init_local_config, load_config
from microfair.ingest import convert_dataset, qc_dataset
from microfair.airflow_env import REPO
from microfair.ledger import Ledger
from tests.dags.runner import run_dag, states
from tests.support.synthetic_ingest import ingest_synthetic

pytestmark = [pytest.mark.dag, pytest.mark.slow]
PASSWORD = "iRODS-pass-for-the-test-7"


@pytest.fixture(scope="module")
def facility(tmp_path_factory):
    root = tmp_path_factory.mktemp("facility")
    config = init_local_config(root)
    cfg = load_config(config)
    for z in cfg.landing_zones:
        z.stability_seconds = 0
    ledger = Ledger.from_config(cfg)
    uids = ingest_synthetic(cfg, ledger, n=2)
    for uid in uids:
        convert_dataset(cfg, ledger, uid)
        qc_dataset(cfg, ledger, uid)
    return config, uids


def test_without_a_connection_the_run_is_skipped_cleanly(facility, airflow_home):
    config, uids = facility
    result = run_dag("microfair_irods", airflow_home, config)
    assert result["state"] == "success"
    assert states(result, "pending") == {-1: "skipped"}
    assert "no Airflow connection 'irods_default'" in result["log"]
    ledger = Ledger.from_config(load_config(config))
    assert all("irods" not in ledger.stage_states(u) for u in uids)


def test_with_a_connection_every_pending_dataset_is_registered(facility, airflow_home, tmp_path):
    config, uids = facility
    state = tmp_path / "zone.pickle"
    env = {
        "AIRFLOW_CONN_IRODS_DEFAULT": json.dumps({"conn_type": "irods", "host": "127.0.0.1", "port": 1247,
                                                  "login": "rods", "password": PASSWORD,
                                                  "extra": {"zone": "tempZone", "session_factory": "standin",
                                                            "standin_state": str(state)}}),
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "include"), os.environ.get("PYTHONPATH", "")]),
    }
    result = run_dag("microfair_irods", airflow_home, config, extra_env=env)
    assert result["state"] == "success", result["log"][-3000:]
    assert sorted(states(result, "register_irods").values()) == ["success", "success"]
    ledger = Ledger.from_config(load_config(config))
    zone = pickle.loads(state.read_bytes())
    for uid in uids:
        rec = ledger.get_record(uid, "irods")
        assert rec and rec["data_object"] in zone["objs"]
        assert ledger.stage_states(uid)["irods"].state == "succeeded"
        assert any(m.name == "microfair.uid" and m.value == uid for m in zone["objs"][rec["data_object"]].avus)
    assert PASSWORD not in result["log"]
    again = run_dag("microfair_irods", airflow_home, config, extra_env=env)
    assert again["state"] == "success" and "0 dataset(s) to register in iRODS" in again["log"]
    assert states(again, "register_irods") == {-1: "skipped"}  # an empty map: nothing pending
