"""The on_failure_callback records failures that happen before the domain code records anything."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

pytest.importorskip("airflow.sdk")

from microfair.config import init_local_config, load_config  # noqa: E402
from microfair.ledger import Ledger, RunContext  # noqa: E402
from microfair_airflow import common  # noqa: E402
from microfair_airflow.failures import candidate_uids, record_task_failure, stage_of  # noqa: E402


@pytest.fixture
def facility(tmp_path, monkeypatch) -> Ledger:
    config = init_local_config(tmp_path / "facility")
    monkeypatch.setenv("MICROFAIR_CONFIG", str(config))
    common._cached.cache_clear()
    ledger = Ledger.from_config(load_config(config))
    for uid in ("u1", "u2"):
        ledger.upsert_dataset(uid, microscope="m", source_path=f"/l/{uid}.tif", name=f"{uid}.tif", state="validated")
    yield ledger
    common._cached.cache_clear()


def _context(task_id: str, *, exc: BaseException | None, task=None, xcom=None, try_number=1,
             dag_id="microfair_ingest", map_index=3) -> dict:
    ti = SimpleNamespace(dag_id=dag_id, run_id="manual__1", task_id=task_id, map_index=map_index,
                         try_number=try_number, xcom_pull=lambda task_ids, **kw: (xcom or {}).get(task_ids))
    return {"ti": ti, "task": task or SimpleNamespace(upstream_task_ids=set()), "exception": exc, "params": {}}


def test_task_ids_map_to_stages():
    assert stage_of("microfair_ingest", "ingest_acquisition.convert") == "convert"
    assert stage_of("microfair_ingest_batched", "ingest_batch.collect") == "collect"
    assert stage_of("microfair_irods", "register_irods") == "irods"
    assert stage_of("microfair_ingest", "discover") is None
    assert stage_of("microfair_deposit", "validate") is None  # a study deposit, not the ingest stage


def test_a_failure_before_the_domain_code_is_recorded_once(facility):
    task = SimpleNamespace(dataset_uid="u1", upstream_task_ids={"ingest_acquisition.validate"})
    ctx = _context("ingest_acquisition.convert", task=task,
                   exc=RuntimeError("Nanny failed to start worker process"))
    record_task_failure(ctx)
    record_task_failure(ctx)  # the same attempt again: not twice
    [ev] = facility.events("u1", "convert")
    assert ev.state == "failed" and ev.error == "RuntimeError: Nanny failed to start worker process"
    assert (ev.dag_id, ev.run_id, ev.task_id, ev.map_index, ev.attempt) == (
        "microfair_ingest", "manual__1", "ingest_acquisition.convert", 3, 1)
    assert facility.stage_states("u1")["convert"].state == "failed"
    assert facility.events("u2") == []
    # the next try fails the same way: a second failed attempt
    record_task_failure(_context("ingest_acquisition.convert", task=task, exc=OSError("again"), try_number=2))
    assert [e.attempt for e in facility.events("u1", "convert")] == [1, 2]


def test_no_double_record_when_the_stage_recorded_the_attempt(facility):
    rc = RunContext("microfair_ingest", "manual__1", "ingest_acquisition.convert", 3, 1)
    with pytest.raises(ValueError), facility.stage("u1", "convert", rc):
        raise ValueError("bad chunk")
    record_task_failure(_context("ingest_acquisition.convert", task=SimpleNamespace(dataset_uid="u1"),
                                 exc=ValueError("bad chunk")))
    assert [(e.state, e.error) for e in facility.events("u1", "convert")] == [("failed", "ValueError: bad chunk")]


def test_a_running_event_of_the_attempt_is_closed_with_the_message(facility):
    facility.start_event("u2", "qc", RunContext("microfair_ingest", "manual__1", "ingest_acquisition.qc", 3, 1))
    record_task_failure(_context("ingest_acquisition.qc", task=SimpleNamespace(dataset_uid="u2"), exc=None))
    [ev] = facility.events("u2", "qc")
    assert ev.state == "failed" and "without an exception" in ev.error


def test_the_uid_comes_from_the_upstream_xcom_when_the_arguments_never_rendered(facility):
    task = SimpleNamespace(dataset_uid=object(), upstream_task_ids={"ingest_acquisition.validate"})
    record_task_failure(_context("ingest_acquisition.convert", task=task, exc=KeyError("dask"),
                                 xcom={"ingest_acquisition.validate": "u2"}))
    assert [e.state for e in facility.events("u2", "convert")] == ["failed"]


def test_batches_and_acquisition_dicts():
    batch = SimpleNamespace(op_args=[[{"uid": "a"}, {"uid": "b"}]], op_kwargs={})
    assert candidate_uids({"task": batch}) == ["a", "b"]
    one = SimpleNamespace(op_args=[], op_kwargs={"acquisition": {"uid": "c", "source": "/x"}})
    assert candidate_uids({"task": one}) == ["c"]


def test_tasks_without_a_dataset_and_unknown_uids_record_nothing(facility):
    record_task_failure(_context("discover", exc=RuntimeError("landing zone missing")))
    record_task_failure(_context("ingest_acquisition.collect", exc=RuntimeError("x"),
                                 task=SimpleNamespace(op_args=[{"uid": "not-in-ledger"}], op_kwargs={})))
    assert facility.events() == []


def test_every_dag_gets_the_callback():
    from datetime import timedelta

    args = common.task_defaults(retries=1, retry_delay=timedelta(seconds=1), max_retry_delay=timedelta(seconds=2))
    assert args["on_failure_callback"] is record_task_failure
    assert args["on_retry_callback"] is record_task_failure


def test_a_batch_records_a_dataset_that_failed_before_its_stage(facility):
    """In a batch, an exception before the stage's own record (a state check, a missing file) is recorded too."""
    from microfair.ledger import RunContext

    def convert(cfg, ledger, uid, ctx: RunContext) -> str:
        if uid == "u1":
            raise RuntimeError("u1: cannot run convert on a dataset in state 'collected'")
        with ledger.stage(uid, "convert", ctx):
            return "converted"

    ctx = _context("ingest_batch.convert", exc=None, dag_id="microfair_ingest_batched", map_index=0)
    assert common.each_dataset(["u1", "u2"], convert, "converted", ctx) == ["u2"]
    [ev] = facility.events("u1", "convert")
    assert ev.state == "failed" and "cannot run convert" in ev.error and ev.task_id == "ingest_batch.convert"
    assert [e.state for e in facility.events("u2", "convert")] == ["succeeded"]
