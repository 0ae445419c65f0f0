"""microfair_deposit end to end with dag.test() against the BioStudies and DataCite stand-ins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from microfair.config import init_local_config, load_config
from microfair.deposit.pagetab import Submission
from microfair.ledger import Ledger
from tests.dags.runner import run_dag, states
from microfair.standins.biostudies import BiostudiesStandin
from microfair.standins.datacite import DataciteStandin
from tests.support.synthetic_ingest import ingest_synthetic

pytestmark = [pytest.mark.dag, pytest.mark.slow]

LOGIN, PASSWORD = "facility@example.org", "Bio-Studies-pass-42"
DC_PASSWORD = "Data-Cite-pass-42"
EXAMPLE = Path(__file__).resolve().parents[2] / "include/microfair/deposit/example_study.yaml"


@pytest.fixture(scope="module")
def facility(tmp_path_factory):
    root = tmp_path_factory.mktemp("facility")
    config = init_local_config(root)
    data = yaml.safe_load(config.read_text())
    data["biostudies"] = {"retries": 2, "backoff_seconds": 0.1, "ftp_threshold_mb": 0.01}
    data["datacite"] = {"prefix": "10.80000", "publisher": "Example institute"}
    config.write_text(yaml.safe_dump(data))
    cfg = load_config(config)
    for z in cfg.landing_zones:
        z.stability_seconds = 0
    uids = ingest_synthetic(cfg, Ledger.from_config(cfg), n=2)
    return config, uids


def _env(bs, dc) -> dict[str, str]:
    return {
        "AIRFLOW_CONN_BIOSTUDIES_DEFAULT": json.dumps({
            "conn_type": "http", "host": bs.url, "login": LOGIN, "password": PASSWORD,
            "extra": {"ftp_host": "127.0.0.1", "ftp_port": bs.ftp_port, "ftp_user": bs.ftp_user,
                      "ftp_password": bs.ftp_password}}),
        "AIRFLOW_CONN_DATACITE_DEFAULT": json.dumps({
            "conn_type": "http", "host": dc.url, "login": "EBI.TEST", "password": DC_PASSWORD}),
        "MICROFAIR_BIOSTUDIES_POLL_SECONDS": "1",
    }


def test_deposit_dag_validates_uploads_submits_and_records_an_accession(facility, airflow_home, tmp_path):
    config, uids = facility
    with BiostudiesStandin(tmp_path / "bs", {LOGIN: PASSWORD}) as bs, DataciteStandin("EBI.TEST", DC_PASSWORD) as dc:
        conf = {"study_file": str(EXAMPLE), "project": "DEMO", "study": ""}
        result = run_dag("microfair_deposit", airflow_home, config, conf=conf, extra_env=_env(bs, dc))
        for task_id in ("validate", "upload", "submit", "wait", "record", "datacite"):
            assert states(result, task_id) == {-1: "success"}, (task_id, result["log"][-3000:])
        assert result["state"] == "success"
        ledger = Ledger.from_config(load_config(config))
        recs = [ledger.get_record(u, "bia") for u in uids]
        accno = recs[0]["accession"]
        assert accno.startswith("S-BIAD") and all(r["accession"] == accno for r in recs)
        assert recs[0]["doi"] == f"10.6019/{accno}"
        assert ledger.get_record(uids[0], "datacite")["doi"] in dc.dois
        for u in uids:
            assert ledger.stage_states(u)["deposit"].state == "succeeded"
            ev = [e for e in ledger.events(u, "deposit") if e.dag_id == "microfair_deposit"]
            assert [e.details["step"] for e in ev] == ["validate", "upload", "submit", "record", "datacite"]
        submitted = Submission.from_json(bs.submissions[accno])
        assert {s.type for s in submitted.section.walk()} >= {"Study", "Biosample", "Specimen", "Image acquisition",
                                                              "Study Component", "Associations", "Author"}
        assert PASSWORD not in result["log"] and DC_PASSWORD not in result["log"]
        assert sorted(bs.files(LOGIN))[-1].endswith(".json")  # the file list went up with the images


def test_an_incomplete_study_file_fails_validate_and_uploads_nothing(facility, airflow_home, tmp_path):
    config, uids = facility
    data = yaml.safe_load(EXAMPLE.read_text())
    del data["specimens"][0]["sample_preparation"], data["biosamples"][0]["organism"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    with BiostudiesStandin(tmp_path / "bs", {LOGIN: PASSWORD}) as bs, DataciteStandin("EBI.TEST", DC_PASSWORD) as dc:
        result = run_dag("microfair_deposit", airflow_home, config,
                         conf={"study_file": str(bad), "project": "DEMO", "study": ""}, extra_env=_env(bs, dc))
        assert states(result, "validate") == {-1: "failed"}
        assert "specimens[0].sample_preparation" in result["log"]
        assert "biosamples[0].organism.scientific_name" in result["log"]
        assert states(result, "upload") == {-1: "upstream_failed"}
        assert bs.log == [] and bs.files(LOGIN) == []


def test_deposit_dag_target_dataverse_publishes_from_the_same_study_file(facility, airflow_home, tmp_path):
    """target: dataverse takes the common path (the BIA tasks are skipped); Zenodo shares it (contract tests)."""
    from microfair.standins.dataverse import DataverseStandin

    config, uids = facility
    dv_token = "Dv-token-42-never-logged"
    with DataverseStandin({dv_token: "curator"}, collections={"imaging": {"curator"}}) as dv:
        env = {"AIRFLOW_CONN_DATAVERSE_DEFAULT": json.dumps({"conn_type": "dataverse", "host": dv.url,
                                                             "password": dv_token, "extra": {"collection": "imaging"}})}
        conf = {"study_file": str(EXAMPLE), "project": "DEMO", "study": "", "target": "dataverse"}
        result = run_dag("microfair_deposit", airflow_home, config, conf=conf, extra_env=env)
        assert result["state"] == "success", result["log"][-3000:]
        assert states(result, "repository_validate") == states(result, "repository_deposit") == {-1: "success"}
        assert states(result, "validate") == {-1: "skipped"} and states(result, "upload") == {-1: "skipped"}
        ledger = Ledger.from_config(load_config(config))
        pub = ledger.get_record(uids[0], "publications")["dataverse"]
        assert pub["state"] == "published" and pub["pid"] in dv.published() and pub["request"]["project"] == "DEMO"
        assert dv_token not in result["log"]
