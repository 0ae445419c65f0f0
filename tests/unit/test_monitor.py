"""Dashboard queries over a hand-built ledger: every figure checked against what was written."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from microfair.config import FacilityConfig
from microfair.ledger import Ledger, RunContext
from microfair.monitor import (
    NOT_CONFIGURED,
    DatasetQuery,
    change_token,
    compliance,
    dataset_detail,
    dataset_page,
    overview,
    stage_availability,
)
from microfair.monitor.charts import throughput_svg
from microfair.monitor.datasets import get_event, qc_thumbnails
from microfair.monitor.overview import Windows, human_bytes
from microfair.monitor.qc_view import qc_scenes
from microfair.monitor.records import other_records, record_view
from microfair.monitor.seed import seed_ledger, verdict_record

NOW = datetime.now(timezone.utc)


def _dataset(ledger: Ledger, uid: str, *, microscope: str = "demo-scope", project: str = "DEMO", size: int = 1000,
             created: datetime | None = None, collected: bool = True, state: str = "collected") -> None:
    created = created or NOW
    ledger.upsert_dataset(uid, microscope=microscope, source_path=f"/landing/{uid}.czi", name=f"{uid}.czi",
                          project=project, size_bytes=size, state=state, created_at=created,
                          collected_at=created if collected else None, raw_path=f"/raw/{uid}.czi" if collected else None)


def _fail(ledger: Ledger, uid: str, stage: str, map_index: int = 3) -> int:
    with pytest.raises(OSError):
        with ledger.stage(uid, stage, RunContext("microfair_ingest", "manual__1", stage, map_index)):
            raise OSError(f"{uid}: disk full")
    return ledger.events(uid, stage)[-1].id


def _verdict(ledger: Ledger, uid: str, compliant: bool, size: int = 100) -> None:
    """What the 3-2-1 policy checker writes: the verdict record, then a backup stage event."""
    body = verdict_record(uid, f"{uid}.czi", "DEMO", size, compliant)
    ledger.put_record(uid, "backup_verdict", body)
    with ledger.stage(uid, "backup") as outcome:
        outcome.details = {"compliant": compliant, "copies": body["copies"]}
        if not compliant:
            outcome.state, outcome.error = "flagged", "; ".join(body["reasons"])


@pytest.fixture
def facility(facility_config: FacilityConfig, ledger: Ledger) -> tuple[FacilityConfig, Ledger]:
    return facility_config, ledger


def test_overview_counts_windows_failures_and_backlog(facility) -> None:
    cfg, ledger = facility
    w = Windows.at(NOW)
    assert w.month <= w.today <= NOW and w.week <= w.today
    _dataset(ledger, "A1", size=100, created=NOW)
    _dataset(ledger, "A2", size=200, created=NOW, project="NEURO")
    _dataset(ledger, "A3", size=400, created=NOW - timedelta(days=40))  # outside this month
    _dataset(ledger, "W1", size=50, collected=False, state="discovered")  # waiting in the landing zone
    ev = _fail(ledger, "A1", "convert", map_index=3)
    with ledger.stage("A2", "collect", RunContext("microfair_ingest", "r", "collect", 0)):
        pass

    ov = overview(cfg, ledger, now=NOW)
    scope = {a.key: a for a in ov.by_microscope}["demo-scope"]
    assert (scope.today, scope.today_bytes) == (3, 350)  # A1, A2 and W1 arrived today
    assert (scope.week, scope.month, scope.month_bytes) == (3, 3, 350)  # A3 is 40 days old
    projects = {a.key: a for a in ov.by_project}
    assert (projects["NEURO"].today, projects["DEMO"].today_bytes) == (1, 150)
    assert ov.failures_total == 1
    f = ov.failures[0]
    assert (f.uid, f.stage, f.event_id, f.task_id, f.map_index) == ("A1", "convert", ev, "convert", 3)
    assert "disk full" in f.error and f.rerunnable
    (zone,) = ov.backlog
    assert (zone.microscope, zone.waiting, zone.waiting_bytes) == ("demo-scope", 1, 50)
    assert ov.totals == {"datasets": 4, "bytes": 750}
    raw = {t.tier: t for t in ov.storage}["raw"]
    assert raw.ledger_bytes == 700 and raw.volume_total and raw.volume_total > 0
    assert sum(n for _, n, _ in ov.throughput) == 3 - 1  # A3 is older than the 30-day window
    assert ov.throughput[-1][0] == NOW.date()


def test_overview_filtered_by_microscope_hides_other_scopes(facility) -> None:
    cfg, ledger = facility
    _dataset(ledger, "Z1", microscope="zeiss")
    _dataset(ledger, "L1", microscope="leica")
    _fail(ledger, "L1", "qc")
    ov = overview(cfg, ledger, microscope="zeiss", now=NOW)
    assert [a.key for a in ov.by_microscope] == ["zeiss"]
    assert ov.failures_total == 0 and ov.failures == []


def test_stage_availability_not_configured_without_config_or_data(facility) -> None:
    cfg, ledger = facility
    cfg.backup.targets = []
    av = stage_availability(cfg, ledger)
    assert [s for s, a in av.items() if not a.configured] == ["backup", "irods", "deposit"]
    assert stage_availability(cfg, ledger, has_connection=lambda c: c == "irods_default")["irods"].configured
    _dataset(ledger, "D1")
    with ledger.stage("D1", "deposit"):
        pass
    assert stage_availability(cfg, ledger)["deposit"].configured  # data in the ledger: it exists
    page = dataset_page(ledger, DatasetQuery(), stage_availability(cfg, ledger))
    cells = page.rows[0].stages
    assert cells["backup"].state == NOT_CONFIGURED and cells["irods"].state == NOT_CONFIGURED
    assert cells["deposit"].state == "succeeded" and cells["validate"].state == "pending"


def test_dataset_page_filters_search_and_pagination_in_sql(facility) -> None:
    cfg, ledger = facility
    for i in range(23):
        _dataset(ledger, f"P{i:02d}", microscope="zeiss" if i % 2 else "leica", project="DEMO" if i < 20 else "X")
    _fail(ledger, "P05", "qc")
    ledger.put_record("P04", "backup_verdict", verdict_record("P04", "P04.czi", "DEMO", 1, True))
    av = stage_availability(cfg, ledger)
    page = dataset_page(ledger, DatasetQuery(page=2, page_size=10), av)
    assert page.total == 23 and page.pages == 3 and [r.uid for r in page.rows][:2] == ["P12", "P11"]
    assert dataset_page(ledger, DatasetQuery(page=3, page_size=10), av).rows[-1].uid == "P00"
    assert dataset_page(ledger, DatasetQuery(microscope="zeiss"), av).total == 11
    assert dataset_page(ledger, DatasetQuery(project="X"), av).total == 3
    assert [r.uid for r in dataset_page(ledger, DatasetQuery(q="p1"), av).rows] == [f"P{i}" for i in range(19, 9, -1)]
    assert dataset_page(ledger, DatasetQuery(q="%"), av).total == 0  # LIKE wildcards are literal
    failed = dataset_page(ledger, DatasetQuery(stage="qc", stage_state="failed"), av)
    assert [r.uid for r in failed.rows] == ["P05"] and "disk full" in failed.rows[0].stages["qc"].error
    assert dataset_page(ledger, DatasetQuery(stage="qc", stage_state="pending"), av).total == 22
    row = {r.uid: r for r in dataset_page(ledger, DatasetQuery(q="P04"), av).rows}["P04"]
    assert row.stages["backup"].state == "succeeded" and row.stages["backup"].label.startswith("3 copies")
    with pytest.raises(ValueError, match="unknown stage"):
        DatasetQuery(stage="nonsense")


def test_dataset_detail_and_event_lookup(facility) -> None:
    cfg, ledger = facility
    _dataset(ledger, "D1")
    first = _fail(ledger, "D1", "convert", map_index=7)
    second = _fail(ledger, "D1", "convert", map_index=7)
    ledger.put_record("D1", "dublin_core", {"title": "HeLa", "creator": ["A. Lebon"]})
    ledger.put_record("D1", "qc", {"channels": [{"name": "DAPI", "metrics": {"snr": 2.0}, "flags": ["SNR 2 < 3"],
                                                 "thumbnail": "D1/dapi.png"}]})
    ledger.add_file("D1", "raw", "/raw/D1.czi", size_bytes=10, sha256="ab" * 32)
    d = dataset_detail(ledger, "D1", stage_availability(cfg, ledger))
    assert d is not None and d.records["dublin_core"]["title"] == "HeLa"
    assert [e.id for e in d.errors] == [first, second] and d.failed_now == {second}
    assert d.files[0].sha256 == "ab" * 32
    assert qc_thumbnails(d.records["qc"]) == [("DAPI", "D1/dapi.png")]
    (scene,) = qc_scenes(d.records["qc"], qc_thumbnails(d.records["qc"]))  # an older, flat record: one scene
    (ch,) = scene.channels
    assert (ch.name, ch.flags, ch.thumbnail, dict(ch.metrics)["SNR"]) == ("DAPI", ["SNR 2 < 3"], 0, "2")
    ev, uid, latest = get_event(ledger, second)
    assert (uid, latest, ev.map_index) == ("D1", True, 7)
    assert get_event(ledger, first)[2] is False  # superseded: no re-run
    assert dataset_detail(ledger, "nope", {}) is None


def test_compliance_and_retention_schedule(facility) -> None:
    cfg, ledger = facility
    cfg.retention.days = 10
    for uid, days_ago, ok in (("C1", 20, True), ("C2", 5, True), ("C3", 5, False), ("C4", 1, True)):
        _dataset(ledger, uid, size=100, created=NOW - timedelta(days=days_ago))
        _verdict(ledger, uid, ok)
    _dataset(ledger, "C5", size=100)  # collected, never evaluated
    _dataset(ledger, "C6", size=100, created=NOW - timedelta(days=30))
    _verdict(ledger, "C6", True)
    _dataset(ledger, "C7", size=100, created=NOW - timedelta(days=30))
    _verdict(ledger, "C7", True)
    _verdict(ledger, "C7", False)  # dropped out of 3-2-1: the latest verdict counts
    ledger.put_record("C6", "retention", {"deleted_at": NOW.isoformat()})  # already freed
    c = compliance(cfg, ledger, now=NOW)
    assert (c.compliant, c.non_compliant, c.no_verdict) == (4, 2, 1)
    assert [r.uid for r in c.non_compliant_rows] == ["C7", "C3"]
    assert "3 required" in " ".join(c.non_compliant_rows[1].reasons) and c.non_compliant_rows[1].copies == 2
    assert c.overdue is not None and (c.overdue.datasets, c.overdue.bytes) == (1, 100)  # C1
    assert [(b.day, b.datasets) for b in c.schedule] == [
        ((NOW - timedelta(days=5)).date() + timedelta(days=10), 1), ((NOW - timedelta(days=1)).date() + timedelta(days=10), 1)]
    assert (c.freed, c.freed_bytes) == (1, 100) and c.held == 3 and c.dry_run is True
    assert c.by_project == [{"project": "DEMO", "datasets": 6, "compliant": 4}]


def test_change_token_moves_on_every_kind_of_write(facility) -> None:
    _, ledger = facility
    t0 = change_token(ledger)
    _dataset(ledger, "T1")
    ledger.put_record("T1", "qc", {"channels": []})
    t1 = change_token(ledger)
    with ledger.stage("T1", "qc"):
        pass
    t2 = change_token(ledger)
    ledger.audit("someone", "rerun", "T1")
    t3 = change_token(ledger)
    assert len({t0, t1, t2, t3}) == 4


def test_seeded_ledger_has_the_requested_shape(facility) -> None:
    cfg, ledger = facility
    r = seed_ledger(ledger, ["a", "b"], n_datasets=200, events_target=2000, seed=1)
    assert r.datasets == 200 and 1500 <= r.events <= 2500 and r.failed > 0 and r.backlog > 0
    ov = overview(cfg, ledger)
    assert ov.totals["datasets"] == 200 and ov.failures_total == r.failed
    assert sum(b.waiting for b in ov.backlog) == 0  # zones a/b are not configured landing zones
    assert dataset_page(ledger, DatasetQuery(state="discovered"), {}).total == r.backlog


def test_throughput_chart_and_bytes() -> None:
    day = NOW.date()
    svg = throughput_svg([(day - timedelta(days=1), 0, 0), (day, 3, 3 * 1024 ** 3)])
    assert svg.startswith("<svg") and svg.count("<rect") == 2 and "3 dataset(s), 3.00 GiB" in svg
    assert human_bytes(None) == "–" and human_bytes(512) == "512 B" and human_bytes(1536) == "1.5 KiB"


def test_irods_and_bia_cells_and_record_views(facility) -> None:
    cfg, ledger = facility
    _dataset(ledger, "R1")
    _dataset(ledger, "R2")
    _dataset(ledger, "R3")
    with ledger.stage("R1", "irods"):
        pass
    ledger.put_record("R1", "irods", {"uid": "R1", "mode": "put", "collection": "/zone/home/demo/DEMO/S1/E1",
                                      "data_object": "/zone/home/demo/DEMO/S1/E1/R1.czi", "checksum": "sha2:q83v",
                                      "objects": 4, "checksums_verified": 4, "transferred": 4, "group": "demo"})
    with ledger.stage("R1", "deposit"):
        pass
    ledger.put_record("R1", "bia", {"accession": "S-BIAD1234", "version": 2, "status": "POST_PROCESSED",
                                    "doi": "10.6019/S-BIAD1234", "uploads": {"R1.czi": {"sha256": "ab"}},
                                    "study": {"title": "HeLa mitosis"}, "errors": []})
    ledger.put_record("R1", "image_metadata", {"pixel_type": "uint16", "sizes": {"X": 512, "Y": 512}})
    with ledger.stage("R2", "deposit") as outcome:  # submitted, not processed yet
        outcome.details = {"step": "submit"}
    ledger.put_record("R2", "bia", {"accession": "S-BIAD1235", "version": 1, "status": "SUBMITTED"})
    _fail(ledger, "R3", "irods")

    av = stage_availability(cfg, ledger)
    rows = {r.uid: r.stages for r in dataset_page(ledger, DatasetQuery(), av).rows}
    assert (rows["R1"]["irods"].state, rows["R1"]["irods"].label) == ("succeeded", "registered")
    assert rows["R1"]["irods"].hint == "/zone/home/demo/DEMO/S1/E1"
    assert (rows["R1"]["deposit"].label, rows["R1"]["deposit"].hint) == ("S-BIAD1234", "DOI 10.6019/S-BIAD1234")
    assert rows["R2"]["deposit"].label == "S-BIAD1235 · submitted"
    assert rows["R3"]["irods"].state == "failed" and "disk full" in rows["R3"]["irods"].error
    assert rows["R3"]["deposit"].state == "pending"  # the stage exists at this facility (ledger events)

    d = dataset_detail(ledger, "R1", av)
    irods = {f.label: f for f in record_view("irods", d.records["irods"]).fields}
    assert irods["Collection"].value == "/zone/home/demo/DEMO/S1/E1" and irods["Collection"].code
    assert irods["Objects"].value.startswith("4 (4 checksums verified")
    bia = {f.label: f for f in record_view("bia", d.records["bia"]).fields}
    assert bia["Accession"].value == "S-BIAD1234" and bia["Accession"].href.endswith("/studies/S-BIAD1234")
    assert bia["DOI"].href == "https://doi.org/10.6019/S-BIAD1234" and bia["Files uploaded"].value == "1"
    assert bia["Study title"].value == "HeLa mitosis"
    (other,) = other_records(d.records)  # every kind without a section of its own, read generically
    assert other.kind == "image_metadata"
    assert {f.label: f.value for f in other.fields} == {"pixel_type": "uint16", "sizes": "X: 512, Y: 512"}
    rejected = record_view("bia", {"status": "INVALID", "errors": ["title missing"]})
    assert rejected.problems == ["title missing"] and not any(f.label == "Accession" for f in rejected.fields)


def test_irods_and_bia_not_configured_without_connection_or_data(facility) -> None:
    cfg, ledger = facility
    _dataset(ledger, "N1")
    av = stage_availability(cfg, ledger, has_connection=lambda c: False)
    cells = dataset_detail(ledger, "N1", av).stages
    assert cells["irods"].state == NOT_CONFIGURED and cells["deposit"].state == NOT_CONFIGURED
    assert "irods_default" in av["irods"].why


def test_the_qc_table_says_which_range_the_dynamic_range_is_measured_against() -> None:
    from microfair.monitor.qc_view import qc_scenes

    record = {"scenes": [{"index": 0, "channels": [
        {"index": 0, "name": "GFP", "dynamic_range_fraction": 0.558, "range_max": 4095,
         "range_source": "SignificantBits=12"},
        {"index": 1, "name": "DAPI", "dynamic_range_fraction": 0.0349}]}]}
    [scene] = qc_scenes(record)
    cells = [dict(ch.metrics)["Dynamic range"] for ch in scene.channels]
    assert cells == ["55.8 % of 0–4095 (SignificantBits=12)", "3.5 %"]
