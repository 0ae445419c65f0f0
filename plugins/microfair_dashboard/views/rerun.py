"""Re-run a failed task (``/rerun/<event>``) or release a quarantined dataset (``/release/<uid>``).

Only what can succeed is offered. A failed task of a dataset that is not quarantined is
cleared (exactly that task instance). A quarantined dataset is *released* instead: the
ledger puts it back to ``discovered`` (audit entry ``release_quarantine``) and a new run
of its ingest DAG is triggered, once its landing file changed or the operator confirms.
Both confirmation pages warn when the DAG is paused or a run would wait behind
``max_active_runs``.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from microfair.ledger import Ledger
from microfair.monitor import AirflowApiError, TaskInstanceRef, get_event
from microfair.monitor.airflow_api import run_blockers
from microfair.monitor.overview import FAILED_STATES
from microfair.monitor.release import ReleaseRefused, landing_file, record_trigger, release_from_quarantine
from microfair_dashboard.deps import Api, Loaded, MayClear
from microfair_dashboard.security import Reader, check_confirm_token, confirm_token
from microfair_dashboard.views.common import base_url, q, ref, ref_dict

log = logging.getLogger(__name__)
router = APIRouter()
DEFAULT_INGEST_DAG = "microfair_ingest"


def _rerun_target(ledger: Ledger, event_id: int) -> tuple[Any, str | None, TaskInstanceRef]:
    found = get_event(ledger, event_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no ledger event {event_id}")
    ev, uid, latest_failed = found
    if not (ev.dag_id and ev.run_id and ev.task_id):
        raise HTTPException(status.HTTP_409_CONFLICT, "this event was not produced by an Airflow task")
    if not latest_failed:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            "this is not the latest failed attempt of its stage (already re-run or superseded)")
    ds = ledger.get(uid) if uid else None
    if ds is not None and ds.state == "quarantined":
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"{uid} is quarantined ({ds.reason}): a re-run of the task cannot succeed; "
                            "release it from quarantine instead")
    return ev, uid, ref(ev)


@router.get("/rerun/{event_id}", response_class=HTMLResponse)
def rerun_confirm(request: Request, event_id: int, user: Reader, loaded: Loaded, api: Api,
                  may: MayClear) -> HTMLResponse:
    from microfair_dashboard.app import render

    _, ledger = loaded
    ev, uid, r = _rerun_target(ledger, event_id)
    if not may(user, r.dag_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"you may not clear task instances of {r.dag_id}")
    preview, problem = [], None
    try:
        preview = api.clear_task_instance(r, dry_run=True)
    except AirflowApiError as exc:
        problem = str(exc)
    return render(request, "confirm.html", user, ev=ev, uid=uid, ref=r, preview=preview, problem=problem,
                  warnings=run_blockers(api, r.dag_id, own_run_id=r.run_id), token=confirm_token(user, event_id))


@router.post("/rerun/{event_id}")
def rerun(request: Request, event_id: int, user: Reader, loaded: Loaded, api: Api, may: MayClear,
          confirm: str | None = Form(None)) -> Response:
    _, ledger = loaded
    ev, uid, r = _rerun_target(ledger, event_id)
    actor = user.get_name()
    if not may(user, r.dag_id):
        ledger.audit(actor, "rerun_refused", uid, {"event_id": event_id, "reason": "no edit permission",
                                                    **ref_dict(r)})
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"you may not clear task instances of {r.dag_id}")
    check_confirm_token(confirm, user, event_id)
    try:
        cleared = api.clear_task_instance(r, dry_run=False, note=f"re-run from the microfair dashboard by {actor}")
    except AirflowApiError as exc:
        ledger.audit(actor, "rerun_failed", uid, {"event_id": event_id, "error": str(exc), **ref_dict(r)})
        log.error("dataset %s: re-run of %s by %s failed: %s", uid, r.label, actor, exc)
        raise HTTPException(exc.status if exc.status in (403, 404, 409) else status.HTTP_502_BAD_GATEWAY,
                            str(exc)) from None
    ledger.audit(actor, "rerun", uid, {"event_id": event_id, "stage": ev.stage, **ref_dict(r),
                                       "cleared": [{"task_id": t.get("task_id"), "map_index": t.get("map_index"),
                                                    "run_id": t.get("dag_run_id")} for t in cleared]})
    log.info("dataset %s: %s cleared %s (%d task instance(s)) from the dashboard", uid, actor, r.label, len(cleared))
    msg = f"Re-run requested: {r.label} cleared" if cleared else f"Nothing cleared: {r.label} is not failed"
    target = f"{base_url(request)}/datasets/{uid}" if uid else f"{base_url(request)}/"
    return RedirectResponse(f"{target}?msg={q(msg)}", status_code=status.HTTP_303_SEE_OTHER)


def _quarantined(ledger: Ledger, uid: str) -> tuple[Any, str]:
    """The quarantined dataset and the ingest DAG that quarantined it (the one to run again)."""
    ds = ledger.get(uid)
    if ds is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dataset {uid!r} in the ledger")
    if ds.state != "quarantined":
        raise HTTPException(status.HTTP_409_CONFLICT, f"{uid} is not quarantined (state {ds.state!r})")
    failed = [st for st in ledger.stage_states(uid).values() if st.state in FAILED_STATES]
    dag_id = None
    if failed:
        latest = max(failed, key=lambda st: st.event_id or 0)
        ev = get_event(ledger, latest.event_id) if latest.event_id else None
        dag_id = ev[0].dag_id if ev else None
    return ds, dag_id or DEFAULT_INGEST_DAG


def _release_key(uid: str) -> str:
    return f"release:{uid}"


@router.get("/release/{uid}", response_class=HTMLResponse)
def release_confirm(request: Request, uid: str, user: Reader, loaded: Loaded, api: Api,
                    may: MayClear) -> HTMLResponse:
    from microfair_dashboard.app import render

    _, ledger = loaded
    ds, dag_id = _quarantined(ledger, uid)
    if not may(user, dag_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"you may not run {dag_id}")
    return render(request, "release.html", user, ds=ds, dag_id=dag_id, landing=landing_file(ds),
                  warnings=run_blockers(api, dag_id), token=confirm_token(user, _release_key(uid)))


@router.post("/release/{uid}")
def release(request: Request, uid: str, user: Reader, loaded: Loaded, api: Api, may: MayClear,
            token: str | None = Form(None), confirm_unchanged: str | None = Form(None)) -> Response:
    _, ledger = loaded
    ds, dag_id = _quarantined(ledger, uid)
    actor = user.get_name()
    if not may(user, dag_id):
        ledger.audit(actor, "release_refused", uid, {"reason": "no edit permission", "dag_id": dag_id})
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"you may not run {dag_id}")
    check_confirm_token(token, user, _release_key(uid))
    try:
        release_from_quarantine(ledger, uid, actor, confirmed_unchanged=bool(confirm_unchanged),
                                extra={"dag_id": dag_id})
    except ReleaseRefused as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    try:
        run = api.trigger_dag_run(dag_id, note=f"{uid} released from quarantine by {actor} (microfair dashboard)")
        outcome: dict[str, Any] = {"dag_id": dag_id, "dag_run_id": run.get("dag_run_id"), "state": run.get("state")}
        msg = f"Released from quarantine; {dag_id} run {run.get('dag_run_id')} will ingest it again"
    except AirflowApiError as exc:
        outcome = {"dag_id": dag_id, "error": str(exc)}
        msg = f"Released from quarantine; the next run of {dag_id} will ingest it (trigger failed: {exc})"
        log.error("dataset %s: released, but triggering %s failed: %s", uid, dag_id, exc)
    record_trigger(ledger, uid, actor, outcome)
    return RedirectResponse(f"{base_url(request)}/datasets/{uid}?msg={q(msg)}", status_code=status.HTTP_303_SEE_OTHER)
