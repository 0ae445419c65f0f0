"""The dataset page's "Published in" section and the Publish view: drafts waiting for a person, the button
behind the re-run permission and a confirmation, and the run it triggers (the draft's own request)."""

from __future__ import annotations

import re

import pytest

from microfair.deposit.targets.base import Publication
from microfair.deposit.targets.run import record_publication
from tests.support.dashboard import dashboard_client

pytest.importorskip("fastapi.testclient")


class RecordingAirflow:
    def __init__(self) -> None:
        self.triggered: list[tuple[str, dict, str]] = []

    def trigger_dag_run(self, dag_id: str, *, note: str | None = None, conf: dict | None = None) -> dict:
        self.triggered.append((dag_id, conf or {}, note or ""))
        return {"dag_run_id": "manual__1", "state": "queued"}


@pytest.fixture
def client(facility_config, ledger, monkeypatch):
    with dashboard_client(facility_config, ledger, monkeypatch) as c:
        yield c


def _datasets(ledger, *uids: str) -> None:
    for uid in uids:
        ledger.upsert_dataset(uid, name=f"{uid}.czi", microscope="demo-scope", source_path=f"/landing/{uid}.czi",
                              state="qc_done", project="DEMO")


def _draft(ledger, uids, **kw) -> Publication:
    pub = Publication("zenodo", "draft", "1001", "10.5072/zenodo.1001", "https://sandbox.zenodo.org/deposit/1001",
                      metadata_sha256="abc", **kw)
    record_publication(ledger, list(uids), pub, {"study_file": "/srv/study.yaml", "project": "DEMO", "study": None,
                                                 "include_zarr": False})
    return pub


def test_dataset_page_shows_where_it_is_published_with_links(client, ledger):
    _datasets(ledger, "u1")
    page = "https://dv.example.org/dataset.xhtml?persistentId=doi:10.5072/FK2/ABC123"
    record_publication(ledger, ["u1"], Publication("dataverse", "published", "7", "doi:10.5072/FK2/ABC123", page,
                                                   version=2))
    _draft(ledger, ["u1"])
    html = client.get("/datasets/u1").text
    sec = re.search(r'<section data-testid="repositories">(.*?)</section>', html, re.S).group(1)
    rows = dict(re.findall(r'<tr data-target="(\w+)">(.*?)</tr>', sec, re.S))
    assert set(rows) == {"dataverse", "zenodo"}
    assert 'href="https://doi.org/10.5072/FK2/ABC123"' in rows["dataverse"] and ">2<" in rows["dataverse"]
    assert "dataset.xhtml?persistentId=doi:10.5072/FK2/ABC123" in rows["dataverse"]
    assert "draft" in rows["zenodo"] and "/microfair/publish" in rows["zenodo"]
    assert 'data-kind="publications"' not in html  # not repeated under "Other records"


def test_publish_view_lists_drafts_and_publishing_needs_permission_and_confirmation(client, ledger):
    from microfair_dashboard import deps

    _datasets(ledger, "u1", "u2", "u3")
    _draft(ledger, ["u1", "u2"])
    record_publication(ledger, ["u3"], Publication("zenodo", "published", "900", "10.5072/zenodo.900", "x"))
    page = client.get("/publish").text
    rows = re.findall(r'<tr data-draft="([^"]+)">(.*?)</tr>', page, re.S)
    assert [k for k, _ in rows] == ["zenodo:1001"]
    assert "u1" in rows[0][1] and "u2" in rows[0][1] and "10.5072/zenodo.1001" in rows[0][1]
    assert 'data-testid="no-permission"' in page and 'name="token"' not in page  # the default: no permission
    r = client.post("/publish/zenodo/1001", data={"token": "forged"}, follow_redirects=False)
    assert r.status_code == 403 and ledger.audit_entries("publish_refused")

    airflow = RecordingAirflow()
    client.app.dependency_overrides[deps.clear_permission] = lambda: (lambda u, dag_id: dag_id == "microfair_deposit")
    client.app.dependency_overrides[deps.airflow_api] = lambda: airflow
    page = client.get("/publish").text
    token = re.search(r'name="token" value="([^"]+)"', page).group(1)
    assert client.post("/publish/zenodo/1001", data={"token": "forged"}, follow_redirects=False).status_code == 403
    assert client.post("/publish/zenodo/999", data={"token": token}, follow_redirects=False).status_code == 404
    r = client.post("/publish/zenodo/1001", data={"token": token}, follow_redirects=False)
    assert r.status_code == 303 and "/publish?msg=" in r.headers["location"]
    assert airflow.triggered == [("microfair_deposit", {"study_file": "/srv/study.yaml", "project": "DEMO", "study": "",
                                                        "target": "zenodo", "publish": True, "include_zarr": False},
                                  airflow.triggered[0][2])]
    assert "admin" in airflow.triggered[0][2]
    assert ledger.audit_entries("publish_requested")[0].details["datasets"] == ["u1", "u2"]
