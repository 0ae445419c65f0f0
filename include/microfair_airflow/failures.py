"""Every task failure reaches the ledger: the ``on_failure_callback`` of every microfair task.

The stage functions record their own failures (``Ledger.stage``). A task can also fail *before* its
domain code records anything: the dask cluster does not start or cannot be reached, the upstream XCom
is missing, a state check fails. :func:`record_task_failure` (set for every task by
:func:`microfair_airflow.common.task_defaults`) then records a ``failed`` stage event with the
exception's message, with the task instance's dag/run/task/map index/try, so that the dashboard's
Failures (and its re-run button), ``microfair status`` and the alerts show it. When the domain code
already recorded this attempt, nothing is added; an event of this attempt left ``running`` (the
process died in the middle) is closed as failed with the message.

Which datasets: the task's rendered ``dataset_uid`` (operators), its arguments (a uid, an acquisition
dict, or a batch of either), else the XCom of its upstream tasks for the same map index, else
``params["uid"]``. Which stage: the last part of the task id, for the DAGs in :data:`TASK_STAGES`.
A task that concerns no dataset (discover, backup runs, reports) is only logged. Not covered: a facility
file that does not load (no ledger to write to). For a process killed outright the scheduler has the
dag-processor run this callback without the exception; where none runs, the ledger's owner check marks
the event ``interrupted`` (:meth:`Ledger.sweep_interrupted`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("microfair.failures")

_INGEST = {"collect": "collect", "validate": "validate", "convert": "convert", "qc": "qc"}
#: dag_id -> {last part of the task id: ledger stage}
TASK_STAGES: dict[str, dict[str, str]] = {
    "microfair_ingest": _INGEST,
    "microfair_ingest_batched": _INGEST,
    "microfair_irods": {"register_irods": "irods"},
}
MAX_MESSAGE = 4000


def stage_of(dag_id: str | None, task_id: str | None) -> str | None:
    """The ledger stage a task runs (``ingest_acquisition.convert`` in microfair_ingest -> ``convert``)."""
    if not dag_id or not task_id:
        return None
    return TASK_STAGES.get(dag_id, {}).get(task_id.rsplit(".", 1)[-1])


def failure_message(context: dict[str, Any]) -> str:
    """``Type: message`` of the task's exception, as ``Ledger.stage`` writes it."""
    exc = context.get("exception")
    if isinstance(exc, BaseException):
        text = f"{type(exc).__name__}: {exc}"
    elif exc:
        text = str(exc)
    else:
        text = ("the task failed without an exception reaching it (killed, timed out, or its process died); "
                "see the task log")
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + "…"


def _uids_in(value: Any) -> Iterable[str]:
    """uids in a task argument: a uid, an acquisition dict, or a list of either."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        if isinstance(value.get("uid"), str):
            yield value["uid"]
    elif isinstance(value, (list, tuple)):
        for v in value:
            if isinstance(v, (str, dict)):
                yield from _uids_in(v)


def candidate_uids(context: dict[str, Any]) -> list[str]:
    """Dataset uids the failed task was working on (unverified; the caller checks the ledger)."""
    task, ti = context.get("task"), context.get("ti") or context.get("task_instance")
    found: list[str] = []
    uid = getattr(task, "dataset_uid", None)
    if isinstance(uid, str):
        found.append(uid)
    for v in [*(getattr(task, "op_args", None) or ()), *(getattr(task, "op_kwargs", None) or {}).values()]:
        found.extend(_uids_in(v))
    if not found and ti is not None and task is not None:
        upstream = sorted(getattr(task, "upstream_task_ids", None) or ())
        map_index = getattr(ti, "map_index", -1)
        for up in upstream:
            try:
                kw = {"map_indexes": map_index} if map_index is not None and map_index >= 0 else {}
                found.extend(_uids_in(ti.xcom_pull(task_ids=up, **kw)))
            except Exception as exc:  # noqa: BLE001 - an XCom that cannot be read: try the next source
                log.debug("failure callback: no XCom from %s: %s", up, exc)
    params = context.get("params") or {}
    for key in ("uid", "dataset_uid"):
        found.extend(_uids_in(params.get(key)))
    return list(dict.fromkeys(u for u in found if u))


def record_failure(ledger: Any, uid: str, stage: str, ctx: Any, message: str) -> str:
    """Record ``message`` as the failed attempt ``ctx`` of ``stage``; ``"recorded"``, ``"closed"`` (a
    running event of this attempt) or ``"already"`` (the domain code recorded this attempt)."""
    mine = [e for e in ledger.events(uid, stage)
            if (e.dag_id, e.run_id, e.task_id, e.map_index, e.attempt)
            == (ctx.dag_id, ctx.run_id, ctx.task_id, ctx.map_index, ctx.attempt)]
    running = [e for e in mine if e.state == "running"]
    for ev in running:
        ledger.finish_event(ev.id, "failed", error=message, details={"recorded_by": "on_failure_callback"})
    if running:
        return "closed"
    if mine:
        return "already"
    event_id = ledger.start_event(uid, stage, ctx)
    ledger.finish_event(event_id, "failed", error=message, details={"recorded_by": "on_failure_callback"})
    return "recorded"


def record_task_failure(context: dict[str, Any]) -> None:
    """``on_failure_callback``: the failure in the ledger for each dataset the task concerns. Never raises."""
    try:
        _record(context)
    except Exception:  # noqa: BLE001 - a callback must not hide the task's own failure
        log.exception("failure callback: could not record the failure in the ledger")


def _record(context: dict[str, Any]) -> None:
    from microfair_airflow.common import facility, run_context

    ctx = run_context(context)
    stage = stage_of(ctx.dag_id, ctx.task_id)
    if stage is None:
        log.info("failure callback: %s.%s concerns no dataset stage; nothing to record", ctx.dag_id, ctx.task_id)
        return
    message = failure_message(context)
    _, ledger = facility()
    for uid in candidate_uids(context):
        if ledger.get(uid) is None:
            continue
        outcome = record_failure(ledger, uid, stage, ctx, message)
        if outcome == "already":
            log.info("%s: %s failure of try %d already in the ledger", uid, stage, ctx.attempt)
        else:
            log.error("%s: %s failed before the stage recorded it (%s in the ledger): %s", uid, stage, outcome,
                      message)
