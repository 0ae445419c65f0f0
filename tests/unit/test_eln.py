"""ELN links (guide §3.2.3): parsing, the eLabFTW client against the local API v2 stand-in, post-backs
that never fail a stage (pending, retried), and the link carried into the validate stage's records."""

import json
import logging
import os
import socket
import time
from pathlib import Path

import pytest

from microfair.collect import collect, scan
from microfair.eln import ELN_RECORD, ElnLink, pending_posts, post_event, resolve_link, retry_pending
from microfair.eln.elabftw import ElabftwClient, ElnError
from microfair.eln.notify import eln_record, marker
from microfair.ingest import validate_dataset
from microfair.metadata.sidecar import SidecarError, load_sidecar
from microfair.standins.elabftw import ElabftwStandin
from microfair.synthetic import textured_stack, write_ome_tiff

KEY, READ_ONLY = "3-" + "a1" * 20, "4-" + "b2" * 20
GOOD = "2024-05-02_DEMO_Cells_ALebon_Control_RAW_v01"


@pytest.fixture
def eln():
    with ElabftwStandin({KEY: "write", READ_ONLY: "read"}, {("experiments", 42): "Starvation time course",
                                                            ("items", 7): "Antibody lot"}) as svc:
        yield svc


def _closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("value, expected", [
    ("https://eln.example.org/experiments.php?mode=view&id=42", ("elabftw", "experiments", 42)),
    ("https://eln.example.org/sub/database.php?mode=view&id=7", ("elabftw", "items", 7)),
    ("elabftw:42", ("elabftw", "experiments", 42)),
    ("elabftw:items/9", ("elabftw", "items", 9)),
    ({"elabftw_id": 5, "entity_type": "items"}, ("elabftw", "items", 5)),
    ({"url": "https://my.labguru.com/knowledge/experiments/123"}, ("labguru", None, None)),
    ("https://wiki.example.org/notebook/page-3", ("other", None, None)),
])
def test_link_forms_resolve_to_the_entry(value, expected):
    ref = resolve_link(value, base_url="https://eln.example.org")
    assert (ref.system, ref.entity_type, ref.entry_id) == expected
    assert ref.writable == (expected[0] == "elabftw")
    if expected[0] == "elabftw":
        assert ref.url.startswith("https://eln.example.org/") and f"id={expected[2]}" in ref.url


def test_bare_id_without_an_address_is_still_writable_but_has_no_url():
    ref = resolve_link("elabftw:42")
    assert ref.url is None and ref.writable and ref.label == "eLabFTW experiments 42"


@pytest.mark.parametrize("text", ["eln: {}\n", "eln: ftp://host/entry\n", "eln: {url: 'https://x.org/a', foo: 1}\n"])
def test_a_bad_eln_value_is_a_sidecar_error_naming_the_key(tmp_path, text):
    side = tmp_path / "a.ome.tiff.meta.yaml"
    side.write_text(text)
    with pytest.raises(SidecarError, match="eln"):
        load_sidecar(side)


def test_client_reads_and_comments_and_the_standin_keeps_api_v2_shapes(eln):
    client = ElabftwClient(eln.url, KEY)
    assert client.info()["elabftw_version"]
    assert client.entry("experiments", 42)["title"] == "Starvation time course"
    cid = client.add_comment("experiments", 42, "hello")
    assert isinstance(cid, int)
    assert [c["comment"] for c in client.comments("experiments", 42)] == ["hello"]
    assert ("POST", "/api/v2/experiments/42/comments", 201) in eln.log
    with pytest.raises(ElnError) as bad:
        ElabftwClient(eln.url + "/api/v2", "wrong").entry("experiments", 42)
    assert bad.value.status == 401 and "wrong" not in str(bad.value)
    with pytest.raises(ElnError) as ro:
        ElabftwClient(eln.url, READ_ONLY).add_comment("experiments", 42, "x")
    assert ro.value.status == 403
    with pytest.raises(ElnError) as missing:
        client.entry("experiments", 999)
    assert missing.value.status == 404 and not missing.value.retryable


class _Ledger:
    """Just the ledger surface the post-backs use, so these tests need no database."""

    class _Ds:
        def __init__(self, uid):
            self.uid, self.name, self.raw_path, self.sha256 = uid, f"{uid}.czi", f"/raw/{uid}.czi", "ab" * 32

    def __init__(self):
        self.records: dict[tuple[str, str], dict] = {}
        self.ds = {}

    def add(self, uid, ref):
        self.ds[uid] = self._Ds(uid)
        self.put_record(uid, ELN_RECORD, eln_record(ref))

    def require(self, uid):
        return self.ds[uid]

    def datasets(self):
        return list(self.ds.values())

    def get_record(self, uid, kind):
        r = self.records.get((uid, kind))
        return json.loads(json.dumps(r)) if r is not None else None

    def put_record(self, uid, kind, body):
        self.records[(uid, kind)] = json.loads(json.dumps(body))


def test_post_back_comments_once_with_a_marker_and_a_rerun_is_a_noop(eln):
    led = _Ledger()
    led.add("u1", resolve_link("elabftw:42"))
    client = ElabftwClient(eln.url, KEY)
    assert post_event(led, "u1", "ingested", client) == "posted"
    assert post_event(led, "u1", "ingested", client) == "posted"
    comments = eln.comments[("experiments", 42)]
    assert len(comments) == 1 and marker("u1", "ingested") in comments[0]["comment"]
    assert "u1.czi" in comments[0]["comment"]
    assert led.get_record("u1", ELN_RECORD)["posts"]["ingested"]["comment_id"] == comments[0]["id"]


def test_a_post_whose_answer_was_lost_is_not_written_twice(eln):
    led = _Ledger()
    led.add("u1", resolve_link("elabftw:42"))
    eln.comments[("experiments", 42)] = [{"id": 99, "comment": f"earlier {marker('u1', 'ingested')}"}]
    assert post_event(led, "u1", "ingested", ElabftwClient(eln.url, KEY)) == "posted"
    assert len(eln.comments[("experiments", 42)]) == 1
    assert led.get_record("u1", ELN_RECORD)["posts"]["ingested"]["comment_id"] == 99


def test_unreachable_or_refused_eln_leaves_the_post_pending_and_a_retry_posts_it(eln, caplog):
    led = _Ledger()
    led.add("u1", resolve_link("elabftw:42"))
    led.add("u2", resolve_link({"elabftw_id": 7, "entity_type": "items"}))
    caplog.set_level(logging.DEBUG)
    assert post_event(led, "u1", "ingested", ElabftwClient(_closed_port_url(), KEY, timeout=2)) == "pending"
    assert post_event(led, "u2", "ingested", ElabftwClient(eln.url, "3-wrong-key-value")) == "pending"
    assert post_event(led, "u2", "deposited", None, why_no_client="no connection elabftw_default") == "pending"
    rec = led.get_record("u2", ELN_RECORD)["posts"]
    assert "401" in rec["ingested"]["error"] and rec["deposited"]["error"] == "no connection elabftw_default"
    assert "unreachable" in led.get_record("u1", ELN_RECORD)["posts"]["ingested"]["error"]
    assert "3-wrong-key-value" not in caplog.text and KEY not in caplog.text
    assert sorted(pending_posts(led)) == [("u1", "ingested"), ("u2", "deposited"), ("u2", "ingested")]
    eln.fail_next("/api/v2", 1, "503")  # the first retry meets a 503 and stays pending
    assert retry_pending(led, ElabftwClient(eln.url, KEY)) == {"pending": 1, "posted": 2}
    assert retry_pending(led, ElabftwClient(eln.url, KEY)) == {"posted": 1}
    assert pending_posts(led) == []
    assert led.get_record("u1", ELN_RECORD)["posts"]["ingested"]["attempts"] == 3  # unreachable, 503, posted
    assert len(eln.comments[("items", 7)]) == 2


def test_an_entry_that_does_not_exist_fails_the_post_without_retrying(eln):
    led = _Ledger()
    led.add("u1", resolve_link("elabftw:4242"))
    assert post_event(led, "u1", "ingested", ElabftwClient(eln.url, KEY)) == "failed"
    assert pending_posts(led) == []


def test_a_link_that_is_not_elabftw_is_recorded_but_never_posted(eln):
    led = _Ledger()
    led.add("u1", resolve_link("https://my.labguru.com/knowledge/experiments/123"))
    assert post_event(led, "u1", "ingested", ElabftwClient(eln.url, KEY)) is None
    assert eln.log == []


def _land_and_validate(facility_config, ledger, *files: Path):
    """The files settled (an hour old, past the landing zone's quiet time), collected and validated."""
    settled = time.time() - 3600
    for p in files:
        os.utime(p, (settled, settled))
    acq = scan(facility_config, ledger).ready[0]
    collect(facility_config, ledger, acq)
    assert validate_dataset(facility_config, ledger, acq.uid) == "validated"
    return acq


def test_validate_stage_carries_the_link_into_the_records(facility_config, ledger):
    zone = facility_config.landing_zones[0].path
    src = write_ome_tiff(zone / "DEMO/Cells/e1" / f"{GOOD}.ome.tiff", textured_stack((1, 2, 32, 32)), channels=["DAPI"])
    side = src.with_name(src.name + ".meta.yaml")
    side.write_text("eln: https://eln.example.org/experiments.php?mode=view&id=42\n")
    acq = _land_and_validate(facility_config, ledger, src, side)
    rec = ledger.get_record(acq.uid, ELN_RECORD)
    assert (rec["system"], rec["entity_type"], rec["entry_id"], rec["source"]) == ("elabftw", "experiments", 42,
                                                                                     "sidecar")
    url = "https://eln.example.org/experiments.php?mode=view&id=42"
    assert ledger.get_record(acq.uid, "rembi")["study_component"]["eln_entry"] == url
    dc = ledger.get_record(acq.uid, "dublin_core")
    assert url in (dc["relation"] if isinstance(dc["relation"], list) else [dc["relation"]])
    assert isinstance(ElnLink.model_validate("elabftw:1"), ElnLink)


def test_irods_registration_carries_the_link_as_avus(facility_config, ledger):
    pytest.importorskip("irods")
    from microfair.ingest import convert_dataset, qc_dataset
    from microfair.irods import IrodsStore, register_dataset
    from microfair.standins.irods import RecordingSession
    from tests.support.synthetic_ingest import ingest_synthetic

    uid = ingest_synthetic(facility_config, ledger, n=1)[0]
    convert_dataset(facility_config, ledger, uid)
    qc_dataset(facility_config, ledger, uid)
    ledger.put_record(uid, ELN_RECORD, eln_record(resolve_link("https://eln.example.org/database.php?mode=view&id=7")))
    s = RecordingSession(groups=("microfair", "demo"))
    reg = register_dataset(facility_config, ledger, uid, IrodsStore(s))
    avus = {(m.name, m.value) for m in s.objs[reg.data_object].avus}
    assert ("microfair.eln.url", "https://eln.example.org/database.php?mode=view&id=7") in avus
    assert ("microfair.eln.system", "elabftw") in avus and ("microfair.eln.entry_id", "7") in avus
    assert ("microfair.eln.entity_type", "items") in avus


def test_datacite_lists_each_notebook_entry_once_as_is_documented_by():
    from importlib.resources import files

    from microfair.deposit.datacite import datacite_attributes
    from microfair.deposit.study import load_study
    from microfair.eln.notify import eln_links

    study, problems = load_study(files("microfair.deposit") / "example_study.yaml")
    led = _Ledger()
    url = "https://eln.example.org/experiments.php?mode=view&id=42"
    led.add("u1", resolve_link(url))
    led.add("u2", resolve_link(url))
    led.add("u3", resolve_link("elabftw:9"))  # no address known: nothing to cite
    links = eln_links(led, ["u1", "u2", "u3"])
    assert links == [url]
    attrs = datacite_attributes(study, accession="S-BIAD1", eln_links=links)
    rel = [r for r in attrs["relatedIdentifiers"] if r["relatedIdentifierType"] == "URL"]
    assert rel == [{"relatedIdentifier": url, "relatedIdentifierType": "URL", "relationType": "IsDocumentedBy"}]


def test_the_ingest_report_posts_due_links_and_a_missing_connection_leaves_them_pending(
        facility_config, ledger, monkeypatch, tmp_path):
    pytest.importorskip("airflow.sdk")
    import json as _json

    from microfair.eln import due_posts
    from microfair.ingest import convert_dataset, qc_dataset
    from microfair_airflow import common
    from tests.support.synthetic_ingest import ingest_synthetic

    uids = ingest_synthetic(facility_config, ledger, n=2)
    for uid in uids:
        ledger.put_record(uid, ELN_RECORD, eln_record(resolve_link("elabftw:42")))
    convert_dataset(facility_config, ledger, uids[0])
    qc_dataset(facility_config, ledger, uids[0])
    assert due_posts(ledger) == [(uids[0], "ingested")]  # the other has not reached QC
    monkeypatch.setattr(common, "facility", lambda: (facility_config, ledger))
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("AIRFLOW_CONN_ELABFTW_DEFAULT", raising=False)
    assert common.eln_sweep() == {"pending": 1}
    assert "elabftw_default" in ledger.get_record(uids[0], ELN_RECORD)["posts"]["ingested"]["error"]
    ledger.put_record(uids[0], "bia", {"accession": "S-BIAD9", "doi": "10.6019/S-BIAD9"})
    with ElabftwStandin({KEY: "write"}, {("experiments", 42): "t"}) as eln:
        monkeypatch.setenv("AIRFLOW_CONN_ELABFTW_DEFAULT",
                           _json.dumps({"conn_type": "elabftw", "host": eln.url, "password": KEY}))
        assert common.eln_sweep() == {"posted": 2}
        texts = [c["comment"] for c in eln.comments[("experiments", 42)]]
    assert any("S-BIAD9" in t and marker(uids[0], "deposited") in t for t in texts)
    assert any(marker(uids[0], "ingested") in t for t in texts)
    assert due_posts(ledger) == [] and common.eln_sweep() == {}


def test_a_project_default_link_is_used_when_the_sidecar_names_none(facility_config, ledger):
    from microfair.config.core import ProjectDefaults

    facility_config.projects["DEMO"] = ProjectDefaults(eln="elabftw:items/5")
    facility_config.eln.base_url = "https://eln.example.org"
    zone = facility_config.landing_zones[0].path
    src = write_ome_tiff(zone / "DEMO/Cells/e1" / f"{GOOD}.ome.tiff", textured_stack((1, 2, 32, 32)), channels=["DAPI"])
    acq = _land_and_validate(facility_config, ledger, src)
    rec = ledger.get_record(acq.uid, ELN_RECORD)
    assert (rec["entity_type"], rec["entry_id"], rec["source"]) == ("items", 5, "project default")
    assert rec["url"] == "https://eln.example.org/database.php?mode=view&id=5"


def test_due_and_pending_posts_read_only_the_eln_records_not_one_per_dataset(facility_config, ledger, monkeypatch):
    """Review Rv: the ingest report's sweep read one record per dataset of the facility (~0.9 s per 1,000
    datasets, twice per run); it reads the ``eln`` records in one query and looks closer only at those."""
    for i in range(30):
        ledger.upsert_dataset(f"u{i:02d}", name=f"u{i:02d}.czi", microscope="m", source_path=f"/l/u{i:02d}.czi",
                              state="qc_done", project="DEMO")
    for uid in ("u03", "u17"):
        ledger.put_record(uid, ELN_RECORD, eln_record(resolve_link("elabftw:42")))
    rec = ledger.get_record("u17", ELN_RECORD)
    rec["posts"] = {"ingested": {"state": "pending", "attempts": 1}}
    ledger.put_record("u17", ELN_RECORD, rec)
    calls = []
    real = ledger.get_record
    monkeypatch.setattr(ledger, "get_record", lambda uid, kind: calls.append((uid, kind)) or real(uid, kind))
    assert pending_posts(ledger) == [("u17", "ingested")]
    from microfair.eln import due_posts

    due_posts(ledger)
    assert {uid for uid, kind in calls if kind == ELN_RECORD} <= {"u03", "u17"}
    assert len(calls) <= 4, calls  # at most the two datasets' BIA records, never one per dataset
