"""The dashboard over a ledger filled by a real ingest (collect → validate → convert → QC), through HTTP.

The acquisitions come from :mod:`tests.support.real_ingest` (a good OME-TIFF, a misnamed one, an empty
file and random bytes); the app is rendered with FastAPI's TestClient, Airflow authentication replaced
by a fixed user and Airflow's REST API by a recording fake.
"""

from __future__ import annotations

import re
import sys
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from microfair.config import FacilityConfig, init_local_config, load_config
from microfair.ledger import Ledger, RunContext
from tests.support.real_ingest import DAG_ID, Ingested, ingest, ingest_samples

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins"))

fastapi_testclient = pytest.importorskip("fastapi.testclient")


@dataclass
class User:
    name: str = "admin"

    def get_name(self) -> str:
        return self.name

    def get_id(self) -> str:
        return self.name


@dataclass
class FakeAirflow:
    """Airflow's REST API as the dashboard uses it, recording every call."""

    paused: bool = False
    max_active_runs: int = 16
    active_runs: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def clear_task_instance(self, ref, *, dry_run: bool, note: str | None = None) -> list[dict]:
        self.calls.append(("clear", (ref, dry_run)))
        return [{"task_id": ref.task_id, "map_index": ref.map_index, "dag_run_id": ref.run_id, "state": "failed"}]

    def task_instance_states(self, refs) -> dict:
        return {r: "failed" for r in refs}

    def dag(self, dag_id: str) -> dict[str, Any]:
        self.calls.append(("dag", dag_id))
        return {"dag_id": dag_id, "is_paused": self.paused, "max_active_runs": self.max_active_runs}

    def active_dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        self.calls.append(("active_runs", dag_id))
        return list(self.active_runs)

    def failed_task_instances(self, dag_ids, task_ids, *, since=None, limit: int = 5) -> list[dict[str, Any]]:
        self.calls.append(("failed_tis", tuple(task_ids)))
        return [{"dag_id": DAG_ID, "dag_run_id": "scheduled__zone", "task_id": "discover", "state": "failed",
                 "start_date": "2026-12-01T10:00:00Z", "end_date": "2026-12-01T10:00:05Z"}]

    def trigger_dag_run(self, dag_id: str, *, note: str | None = None) -> dict[str, Any]:
        self.calls.append(("trigger", dag_id))
        return {"dag_id": dag_id, "dag_run_id": "manual__released", "state": "queued"}


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> tuple[FacilityConfig, Ledger, Ingested]:
    cfg = load_config(init_local_config(tmp_path_factory.mktemp("real") / "facility"))
    for z in cfg.landing_zones:
        z.stability_seconds = 0.0
    ledger = Ledger.from_config(cfg)
    return cfg, ledger, ingest_samples(cfg, ledger)


@pytest.fixture
def airflow() -> FakeAirflow:
    return FakeAirflow()


@pytest.fixture
def client(real, airflow, monkeypatch):
    from microfair_dashboard import deps
    from microfair_dashboard.app import create_app
    from microfair_dashboard.security import require_reader

    monkeypatch.setenv("AIRFLOW__API__SECRET_KEY", "unit-test-signing-key")
    cfg, ledger, _ = real
    app = create_app()
    app.state.facility.cfg, app.state.facility.ledger = cfg, ledger
    app.dependency_overrides[require_reader] = lambda: User()
    app.dependency_overrides[deps.airflow_api] = lambda: airflow
    app.dependency_overrides[deps.clear_permission] = lambda: (lambda user, dag_id: True)
    app.dependency_overrides[deps.has_connection] = lambda: (lambda conn_id: False)
    with fastapi_testclient.TestClient(app, root_path="/microfair") as c:
        yield c


def _section(html: str, testid: str) -> str:
    m = re.search(rf'<section[^>]*data-testid="{testid}"[^>]*>(.*?)</section>', html, re.S)
    assert m, f"no section {testid}"
    return m.group(1)


def test_the_fixture_is_a_real_ingest(real) -> None:
    cfg, ledger, ing = real
    assert ing.states == {"good": "qc_done", "misnamed": "qc_done", "empty": "quarantined", "corrupt": "quarantined"}
    assert ledger.get_record(ing.uids["good"], "qc")["scenes"][0]["channels"]
    assert ledger.stage_states(ing.uids["misnamed"])["validate"].state == "flagged"


def test_thumbnails_load_from_the_datasets_report_folder(client, real) -> None:
    _, ledger, ing = real
    uid = ing.uids["good"]
    n = len(ledger.get_record(uid, "qc")["thumbnails"])
    assert n == 3
    for i in range(n):
        r = client.get(f"/datasets/{uid}/thumbnails/{i}")
        assert r.status_code == 200, (i, r.text)
        assert r.headers["content-type"] == "image/png" and r.content.startswith(b"\x89PNG")


def test_a_thumbnail_path_with_dotdot_cannot_escape_the_report_folder(client, real) -> None:
    cfg, ledger, ing = real
    uid = ing.uids["misnamed"]
    qc = deepcopy(ledger.get_record(uid, "qc"))
    secret = cfg.storage.reports / "outside.png"  # inside the reports root, outside this dataset's folder
    secret.write_bytes(b"\x89PNG not yours")
    qc["thumbnails"] = {"evil": "../" * 6 + "etc/hostname", "sibling": "../../../outside.png"}
    ledger.put_record(uid, "qc", qc)
    try:
        for i in (0, 1):
            assert client.get(f"/datasets/{uid}/thumbnails/{i}").status_code == 404
    finally:
        ledger.put_record(uid, "qc", ingest_qc_restore(cfg, ledger, uid))


def ingest_qc_restore(cfg: FacilityConfig, ledger: Ledger, uid: str) -> dict[str, Any]:
    import json

    (report,) = [f for f in ledger.files(uid, "report") if f.path.endswith("qc.json")]
    return json.loads(Path(report.path).read_text())


def test_qc_table_per_scene_and_channel_with_histograms_and_no_raw_record(client, real) -> None:
    _, _, ing = real
    html = client.get(f"/datasets/{ing.uids['good']}").text
    qc = _section(html, "qc")
    table = re.search(r'<table[^>]*data-testid="qc-scene-0".*?</table>', qc, re.S)
    assert table, "no QC table for scene 0"
    rows = re.findall(r"<tr data-channel=\"(\d+)\">(.*?)</tr>", table.group(0), re.S)
    assert [i for i, _ in rows] == ["0", "1"]
    assert "DAPI" in rows[0][1] and "GFP" in rows[1][1]
    for _, row in rows:
        assert row.count('<svg class="histogram"') == 1  # the histogram as a small chart
        assert "SNR" in table.group(0) and re.search(r"\b\d+\.\d+\b", row)
    assert '"counts"' not in html and '"edges"' not in html and "<pre" not in qc
    assert len(html) < 60_000
    assert qc.count("/thumbnails/") == 3
    assert re.search(r"verified: (\d+)/\1 planes identical", _section(html, "pixel-proof"))  # the conversion's proof


def test_rembi_and_dublin_core_are_definition_lists_with_missing_values(client, real) -> None:
    _, _, ing = real
    html = client.get(f"/datasets/{ing.uids['good']}").text
    dc = _section(html, "dublin-core")
    rembi = _section(html, "rembi")
    for part in (dc, rembi):
        assert "<dl" in part and "<pre" not in part and "None" not in part and "{" not in part
    assert re.search(r"<dt>description</dt>\s*<dd class=\"missing\">missing</dd>", dc)
    assert "Homo sapiens" in rembi and re.search(r"<dt>organism</dt>\s*<dd><dl", rembi)  # nested, readable
    assert "missing" in rembi


def test_flags_are_warnings_not_errors(client, real) -> None:
    _, _, ing = real
    html = client.get(f"/datasets/{ing.uids['misnamed']}").text
    warnings = _section(html, "warnings")
    assert "does not follow the convention" in warnings and "signal-to-noise" in warnings
    assert 'class="reason"' not in warnings and "st-failed" not in warnings
    assert 'data-testid="errors"' not in html and "superseded" not in html


def test_datasets_table_has_a_state_column_and_quarantined_rows_never_pending(client, real) -> None:
    _, _, ing = real
    html = client.get("/datasets").text
    head = re.search(r"<thead>(.*?)</thead>", html, re.S).group(1)
    assert ">State<" in head
    rows = {m.group(1): m.group(0) for m in re.finditer(r'<tr data-uid="([^"]+)">.*?</tr>', html, re.S)}
    empty = rows[ing.uids["empty"]]
    assert "empty file (0 bytes)" in empty and ">quarantined<" in empty
    cells = re.findall(r'<td class="stage" data-stage="(\w+)">(.*?)</td>', empty, re.S)
    by_stage = {s: c for s, c in cells}
    assert "failed" in by_stage["collect"]
    for stage in ("validate", "convert", "qc"):
        assert ">quarantined<" in by_stage[stage] and "pending" not in by_stage[stage], stage
    corrupt = {s: c for s, c in re.findall(r'<td class="stage" data-stage="(\w+)">(.*?)</td>',
                                            rows[ing.uids["corrupt"]], re.S)}
    assert "succeeded" in corrupt["collect"] and "failed" in corrupt["validate"]
    assert ">quarantined<" in corrupt["convert"] and "pending" not in rows[ing.uids["corrupt"]]


def test_one_byte_unit_convention_in_the_dashboard_and_the_cli(client, real, capsys, tmp_path) -> None:
    from microfair import cli
    from microfair.units import format_bytes

    assert format_bytes(1_500_000) == "1.4 MiB" and format_bytes(3 * 1024 ** 3) == "3.0 GiB"
    assert format_bytes(512) == "512 B" and format_bytes(None) == "–"
    cfg, ledger, _ = real
    total = ledger.summary()["bytes"]
    html = client.get("/").text
    assert format_bytes(total) in html and not re.search(r"\d (MB|GB|kB)\b", html)
    config = init_local_config(tmp_path / "f")
    small = Ledger.from_config(load_config(config))
    small.upsert_dataset("U1", microscope="demo-scope", source_path="/l/u1", name="u1", size_bytes=1_500_000,
                         state="collected")
    assert cli.main(["--config", str(config), "status"]) == 0
    out = capsys.readouterr().out
    assert "1.4 MiB collected" in out and " MB" not in out


def test_a_missing_landing_zone_is_a_warning_card_and_an_alert(client, real, airflow, tmp_path) -> None:
    from microfair.monitor.alerts import zone_alerts

    cfg, ledger, _ = real
    zone = cfg.landing_zones[0]
    moved = tmp_path / "unmounted"
    zone.path.rename(moved)
    try:
        html = client.get("/").text
        card = re.search(r'<div class="card warn"[^>]*data-testid="zone-missing".*?</div>', html, re.S)
        assert card and zone.microscope in card.group(0) and "not mounted" in card.group(0)
        assert "scheduled__zone / discover" in card.group(0)  # the failed discover task, from Airflow's REST API
        assert ("failed_tis", ("discover", "landing_zones_mounted")) in airflow.calls
        alerts = zone_alerts(cfg, ledger)
        assert [a.kind for a in alerts] == ["landing_zone_missing"] and str(zone.path) in alerts[0].reason
        assert zone_alerts(cfg, ledger) == []  # once per outage, not after every task
    finally:
        moved.rename(zone.path)
    airflow.calls.clear()
    assert "zone-missing" not in client.get("/").text
    assert not [c for c in airflow.calls if c[0] == "failed_tis"]  # asked only while a zone is missing
    assert zone_alerts(cfg, ledger) == []  # back: no alert; the next outage alerts again


def test_an_interrupted_stage_is_shown_in_the_failures(client, real) -> None:
    _, ledger, ing = real
    uid = ing.uids["good"]
    ev = ledger.start_event(uid, "irods", RunContext(DAG_ID, "manual__int", "register", 0))
    ledger.finish_event(ev, "interrupted", error="worker killed (SIGTERM) while registering")
    try:
        html = client.get("/").text
        row = re.search(rf'<tr data-event="{ev}">.*?</tr>', html, re.S)
        assert row and "interrupted" in row.group(0) and "worker killed" in row.group(0)
        detail = client.get(f"/datasets/{uid}").text
        assert "interrupted" in _section(detail, "errors-section")
    finally:
        with ledger.stage(uid, "irods"):
            pass


def test_a_quarantined_item_offers_release_not_a_plain_rerun(client, real) -> None:
    _, ledger, ing = real
    html = client.get("/").text
    for key in ("empty", "corrupt"):
        uid = ing.uids[key]
        ev = ledger.stage_states(uid)["collect" if key == "empty" else "validate"].event_id
        row = re.search(rf'<tr data-event="{ev}">.*?</tr>', html, re.S).group(0)
        assert f'data-testid="rerun-{ev}"' not in row
        assert f'data-testid="release-{uid}"' in row and "quarantined" in row
        assert client.get(f"/rerun/{ev}").status_code == 409  # the plain re-run cannot succeed
        detail = client.get(f"/datasets/{uid}").text
        assert f'data-testid="rerun-{ev}"' not in detail and f'data-testid="release-{uid}"' in detail


def test_release_needs_a_changed_file_or_a_confirmation(client, real, airflow) -> None:
    cfg, ledger, ing = real
    uid = ing.uids["corrupt"]
    page = client.get(f"/release/{uid}").text
    assert "unchanged" in page and 'name="confirm_unchanged"' in page
    token = re.search(r'name="token" value="([^"]+)"', page).group(1)
    r = client.post(f"/release/{uid}", data={"token": token}, follow_redirects=False)
    assert r.status_code == 409 and ledger.require(uid).state == "quarantined"
    assert ("trigger", DAG_ID) not in airflow.calls


def test_release_after_the_file_changed_resets_triggers_and_shows_the_new_reason(client, real, airflow) -> None:
    import os
    import time

    cfg, ledger, ing = real
    uid = ing.uids["empty"]
    old_reason = ledger.require(uid).reason
    src = ing.files["empty"]
    src.write_bytes(b"still not an image, but no longer empty")
    t = time.time() - 3600
    os.utime(src, (t, t))
    page = client.get(f"/release/{uid}").text
    assert "changed since" in page and "unchanged" not in page and 'name="confirm_unchanged"' not in page
    token = re.search(r'name="token" value="([^"]+)"', page).group(1)
    r = client.post(f"/release/{uid}", data={"token": token}, follow_redirects=False)
    assert r.status_code == 303, r.text
    ds = ledger.require(uid)
    assert ds.state == "discovered"
    (audit,) = [a for a in ledger.audit_entries("release_quarantine") if a.dataset_id == ds.id]
    assert audit.actor == "admin" and audit.details["previous_reason"] == old_reason
    assert audit.details["file_changed"] is True and audit.details["triggered"]["dag_run_id"] == "manual__released"
    assert ("trigger", DAG_ID) in airflow.calls
    # The next ingest picks it up (same dataset), and the dashboard shows the new reason.
    states = ingest(cfg, ledger, run_id="manual__after_release")
    assert states.get(uid) == "quarantined"
    new_reason = ledger.require(uid).reason
    assert new_reason != old_reason and new_reason.startswith("validate:")
    html = client.get("/").text
    ev = ledger.stage_states(uid)["validate"].event_id
    row = re.search(rf'<tr data-event="{ev}">.*?</tr>', html, re.S).group(0)
    assert "validate" in row and "empty file" not in row
    assert "empty file" not in re.search(rf'<tr data-uid="{uid}">.*?</tr>', client.get("/datasets").text,
                                         re.S).group(0)


def test_confirm_pages_warn_when_the_dag_is_paused_or_runs_are_blocked(client, real, airflow) -> None:
    _, ledger, ing = real
    uid = ing.uids["corrupt"]
    airflow.paused = True
    page = client.get(f"/release/{uid}").text
    assert re.search(r'data-testid="run-warning"[^>]*>[^<]*is paused', page)
    airflow.paused, airflow.max_active_runs = False, 1
    airflow.active_runs = [{"dag_run_id": "scheduled__x", "state": "running"}]
    page = client.get(f"/release/{uid}").text
    assert "max_active_runs" in page and "scheduled__x" in page
    airflow.active_runs = []
    assert 'data-testid="run-warning"' not in client.get(f"/release/{uid}").text


def test_release_is_refused_when_a_newer_version_of_the_file_took_over(facility_config, ledger) -> None:
    from microfair.monitor.release import ReleaseRefused, release_from_quarantine

    for uid, state in (("OLD", "quarantined"), ("NEW", "discovered")):
        ledger.upsert_dataset(uid, microscope="demo-scope", source_path="/landing/a.czi", name="a.czi", state=state)
    with pytest.raises(ReleaseRefused, match="already taken up as dataset NEW"):
        release_from_quarantine(ledger, "OLD", "admin")
    assert ledger.require("OLD").state == "quarantined" and ledger.audit_entries("release_quarantine") == []


def test_a_user_who_may_not_clear_gets_no_release_and_a_forged_post_is_refused(client, real) -> None:
    from microfair_dashboard import deps

    _, ledger, ing = real
    uid = ing.uids["corrupt"]
    client.app.dependency_overrides[deps.clear_permission] = lambda: (lambda user, dag_id: False)
    assert f'data-testid="release-{uid}"' not in client.get(f"/datasets/{uid}").text
    assert client.get(f"/release/{uid}").status_code == 403
    r = client.post(f"/release/{uid}", data={"token": "forged", "confirm_unchanged": "yes"}, follow_redirects=False)
    assert r.status_code == 403 and ledger.require(uid).state == "quarantined"
    assert [a.actor for a in ledger.audit_entries("release_refused")] == ["admin"]
