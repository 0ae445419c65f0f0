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


def test_raw_path_is_unique_so_two_datasets_cannot_claim_one_raw_copy(ledger):
    from sqlalchemy.exc import IntegrityError

    ledger.upsert_dataset("d1", microscope="m1", source_path="/a", name="x.czi", raw_path="/raw/P/S/E/x.czi")
    ledger.upsert_dataset("d2", microscope="m2", source_path="/b", name="x.czi")
    with pytest.raises(IntegrityError):
        ledger.update("d2", raw_path="/raw/P/S/E/x.czi")
    ledger.update("d2", raw_path=None)  # any number of datasets without a raw copy
    ledger.upsert_dataset("d3", microscope="m3", source_path="/c", name="y.czi")
    assert ledger.get("d3").version == 1 and ledger.get("d3").superseded_by is None


def test_migration_0002_resolves_old_duplicate_raw_paths_then_enforces_uniqueness(tmp_path):
    from sqlalchemy import create_engine, text

    from microfair.ledger.migrate import upgrade

    url = f"sqlite:///{tmp_path}/old.db"
    engine = create_engine(url)
    upgrade(engine, "0001")
    with engine.begin() as c:
        for i, (mic, raw) in enumerate([("m1", "/raw/x.czi"), ("m2", "/raw/x.czi"), ("m1", "/raw/y.czi")]):
            c.execute(text("INSERT INTO datasets (uid, microscope, source_path, name, raw_path, state, created_at, "
                           "updated_at) VALUES (:u, :m, :s, 'x', :r, 'collected', '2026-01-01', '2026-01-01')"),
                      {"u": f"d{i}", "m": mic, "s": f"/l/{i}", "r": raw})
    engine.dispose()
    led = Ledger(url)  # migrates to head
    assert led.get("d0").raw_path == "/raw/x.czi" and led.get("d2").raw_path == "/raw/y.czi"
    assert led.get("d1").raw_path is None and "belongs to dataset id 1" in led.get("d1").reason
    assert [d.version for d in led.datasets()] == [1, 1, 1]
