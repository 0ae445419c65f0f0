import pytest
from sqlalchemy import inspect

from microfair.ledger import Ledger, RunContext


def test_migrations_create_every_table_and_are_idempotent(tmp_path):
    url = f"sqlite:///{tmp_path}/l.db"
    Ledger(url)
    led = Ledger(url)  # second migrate is a no-op
    names = set(inspect(led.engine).get_table_names())
    assert {"datasets", "files", "stage_events", "stage_status", "records", "audit", "alembic_version"} <= names


def test_stage_records_success_failure_and_run_context(ledger):
    ledger.upsert_dataset("d1", microscope="m", source_path="/a/b.czi", name="b.czi")
    with ledger.stage("d1", "collect", RunContext("ingest", "r1", "collect", 4, 2)) as o:
        o.bytes, o.checksum = 10, "sha256:ab"
    with pytest.raises(RuntimeError):
        with ledger.stage("d1", "convert"):
            raise RuntimeError("disk on fire")
    ev = ledger.events("d1")
    assert [(e.stage, e.state) for e in ev] == [("collect", "succeeded"), ("convert", "failed")]
    assert (ev[0].map_index, ev[0].attempt, ev[0].bytes) == (4, 2, 10)
    assert ev[1].error == "RuntimeError: disk on fire" and ev[1].ended_at is not None
    st = ledger.stage_states("d1")
    assert st["convert"].state == "failed" and st["collect"].state == "succeeded"


def test_upserts_are_idempotent(ledger):
    for _ in range(2):
        ledger.upsert_dataset("d1", microscope="m", source_path="/a", name="a")
        ledger.add_file("d1", "raw", "/raw/a", size_bytes=1, sha256="x")
        ledger.put_record("d1", "qc", {"v": 1})
    ledger.put_record("d1", "qc", {"v": 2})
    assert len(ledger.datasets()) == 1 and len(ledger.files("d1")) == 1
    assert ledger.get_record("d1", "qc") == {"v": 2}


def test_unknown_dataset_is_a_clear_error(ledger):
    with pytest.raises(KeyError, match="nope: no such dataset"):
        ledger.put_record("nope", "qc", {})
