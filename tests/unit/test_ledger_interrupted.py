"""A stage event left ``running`` by a SIGKILLed process is seen as interrupted, never as running forever."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta

import pytest

from microfair.ledger import Ledger, RunContext
from microfair.ledger.models import utcnow

# A stage that is killed in the middle: it says "inside" once its event is recorded, then waits.
KILLED_STAGE = r"""
import sys, time
from microfair.ledger import Ledger, RunContext
ledger = Ledger(sys.argv[1], migrate=False)
with ledger.stage("d1", "convert", RunContext("microfair_ingest", "r1", "ingest_acquisition.convert", 0, 1)):
    print("inside", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def killed(ledger: Ledger) -> Ledger:
    """d1's convert started by a process that was then SIGKILLed in the middle of the stage."""
    ledger.upsert_dataset("d1", microscope="m", source_path="/l/a.czi", name="a.czi", state="validated")
    proc = subprocess.Popen([sys.executable, "-c", KILLED_STAGE, ledger.url], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        assert proc.stdout.readline().strip() == "inside"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    assert [e.state for e in ledger.events("d1", "convert")] == ["running"]  # what the old code kept forever
    return ledger


def test_status_lists_a_stage_whose_process_was_killed(killed):
    problems = killed.summary()["problems"]
    assert [(p["uid"], p["state"]) for p in problems] == [("d1", "convert interrupted")]
    assert "gone" in problems[0]["reason"]
    assert killed.stage_states("d1")["convert"].state == "running"  # summary only reads


def test_the_next_run_of_the_stage_marks_it_interrupted(killed):
    with killed.stage("d1", "convert", RunContext("microfair_ingest", "r2", "ingest_acquisition.convert", 0, 1)):
        pass
    first, second = killed.events("d1", "convert")
    assert first.state == "interrupted" and first.ended_at is not None
    assert "ended without finishing it" in first.error and f"superseded by event {second.id}" in first.error
    assert second.state == "succeeded"
    assert killed.stage_states("d1")["convert"].state == "succeeded"
    assert killed.summary()["problems"] == []


def test_the_sweep_marks_orphans_and_spares_live_processes(killed):
    # a stage that is really running in this (live) process, started long ago
    killed.upsert_dataset("d2", microscope="m", source_path="/l/b.czi", name="b.czi", state="validated")
    live = killed.start_event("d2", "convert")
    later = utcnow() + timedelta(hours=1)
    assert killed.sweep_interrupted(older_than=timedelta(hours=2), now=later) == []  # too recent
    orphan = killed.events("d1", "convert")[0].id
    assert killed.sweep_interrupted(older_than=timedelta(minutes=10), now=later) == [orphan]
    assert killed.stage_states("d1")["convert"].state == "interrupted"
    assert killed.stage_states("d2")["convert"].state == "running"
    assert [e.state for e in killed.events("d2")] == ["running"] and killed.events("d2")[0].id == live
    assert killed.sweep_interrupted(now=later) == []  # idempotent
    unfinished = killed.unfinished_datasets()
    assert [(d.uid, stage, state) for d, stage, state in unfinished] == [("d1", "convert", "interrupted")]
    problems = killed.summary()["problems"]
    assert [(p["uid"], p["state"]) for p in problems] == [("d1", "convert interrupted")]


def test_an_owner_on_another_host_is_swept_only_after_the_long_grace(ledger):
    ledger.upsert_dataset("d3", microscope="m", source_path="/l/c.czi", name="c.czi", state="collected")
    ev = ledger.start_event("d3", "validate")
    with ledger.session() as s:
        from microfair.ledger.models import StageEvent

        s.get(StageEvent, ev).details = {"owner": {"host": "worker-7.elsewhere", "pid": 1234, "start": "1"}}
    assert ledger.sweep_interrupted(now=utcnow() + timedelta(hours=2)) == []
    assert ledger.sweep_interrupted(now=utcnow() + timedelta(hours=25)) == [ev]
    assert ledger.events("d3")[0].state == "interrupted"


def test_a_late_finish_never_overwrites_a_newer_attempt(ledger):
    ledger.upsert_dataset("d4", microscope="m", source_path="/l/d.czi", name="d.czi", state="validated")
    old = ledger.start_event("d4", "qc")
    new = ledger.start_event("d4", "qc")  # marks the old one interrupted
    ledger.finish_event(new, "succeeded")
    ledger.finish_event(old, "failed", error="came back late")
    assert ledger.stage_states("d4")["qc"].state == "succeeded"
    assert ledger.stage_states("d4")["qc"].event_id == new


def test_failed_stages_are_listed_by_status_and_as_unfinished(ledger):
    ledger.upsert_dataset("d5", microscope="m", source_path="/l/e.czi", name="e.czi", state="validated")
    ledger.upsert_dataset("d6", microscope="m", source_path="/l/f.czi", name="f.czi", state="quarantined",
                          reason="empty file")
    with pytest.raises(OSError):
        with ledger.stage("d5", "convert"):
            raise OSError("No space left on device")
    with pytest.raises(ValueError):
        with ledger.stage("d6", "collect"):
            raise ValueError("empty")
    problems = {p["uid"]: p for p in ledger.summary()["problems"]}
    assert problems["d5"]["state"] == "convert failed" and "No space left" in problems["d5"]["reason"]
    assert problems["d6"]["state"] == "quarantined"  # listed once, as quarantined
    assert [(d.uid, st) for d, st, _ in ledger.unfinished_datasets()] == [("d5", "convert")]
    assert ledger.unfinished_datasets(stages=("collect",)) == []


def test_a_superseded_version_is_not_unfinished(ledger):
    ledger.upsert_dataset("d7", microscope="m", source_path="/l/g.czi", name="g.czi", state="validated")
    with pytest.raises(OSError), ledger.stage("d7", "convert"):
        raise OSError("read error")
    assert [d.uid for d, _, _ in ledger.unfinished_datasets()] == ["d7"]
    ledger.update("d7", state="superseded")  # a newer version of the file took over
    assert ledger.unfinished_datasets() == [] and ledger.summary()["problems"] == []
