"""Drafts waiting for a person to publish them (``/publish``), and the publish button.

Many facilities want a person to press publish. A deposit run with ``publish: false`` leaves a complete
draft on Dataverse or Zenodo and records it in the ledger; this page lists those drafts with their links.
Publishing triggers ``microfair_deposit`` again with the draft's own request and ``publish: true``: the
run finds the draft, sends nothing again (every checksum matches) and publishes it. The button needs the
same permission as a re-run (clearing and triggering runs of ``microfair_deposit``), and a confirmation
token bound to the user and the draft.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from microfair.deposit.targets import TARGETS
from microfair.deposit.targets.drafts import WaitingDraft, waiting_drafts
from microfair.monitor import AirflowApiError
from microfair_dashboard.deps import Api, Loaded, MayClear
from microfair_dashboard.security import Reader, check_confirm_token, confirm_token
from microfair_dashboard.views.common import base_url, q

log = logging.getLogger(__name__)
router = APIRouter()
DEPOSIT_DAG = "microfair_deposit"


def _token_key(d: WaitingDraft) -> str:
    return f"publish:{d.key}"


@router.get("/publish", response_class=HTMLResponse)
def publish_list(request: Request, user: Reader, loaded: Loaded, may: MayClear, msg: str | None = None) -> HTMLResponse:
    from microfair_dashboard.app import render

    _, ledger = loaded
    drafts = waiting_drafts(ledger)
    allowed = may(user, DEPOSIT_DAG)
    return render(request, "publish.html", user, page="publish", drafts=drafts, allowed=allowed, msg=msg,
                  titles={k: t.title for k, t in TARGETS.items()}, dag_id=DEPOSIT_DAG,
                  tokens={d.key: confirm_token(user, _token_key(d)) for d in drafts} if allowed else {})


@router.post("/publish/{target}/{draft_id}")
def publish(request: Request, target: str, draft_id: str, user: Reader, loaded: Loaded, api: Api, may: MayClear,
            token: str | None = Form(None)) -> Response:
    _, ledger = loaded
    actor = user.get_name()
    draft = next((d for d in waiting_drafts(ledger) if d.target == target and d.id == draft_id), None)
    if draft is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {target} draft {draft_id} waits to be published")
    if not may(user, DEPOSIT_DAG):
        ledger.audit(actor, "publish_refused", None, {"target": target, "draft": draft_id,
                                                      "reason": "no edit permission"})
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"you may not run {DEPOSIT_DAG}")
    check_confirm_token(token, user, _token_key(draft))
    if not draft.request.get("study_file"):
        raise HTTPException(status.HTTP_409_CONFLICT, "this draft does not say which study file made it")
    conf: dict[str, Any] = {"study_file": draft.request["study_file"], "project": draft.request.get("project") or "",
                            "study": draft.request.get("study") or "", "target": target, "publish": True,
                            "include_zarr": bool(draft.request.get("include_zarr"))}
    try:
        run = api.trigger_dag_run(DEPOSIT_DAG, conf=conf,
                                  note=f"publish {target} draft {draft_id} ({draft.pid}) by {actor} "
                                       "(microfair dashboard)")
    except AirflowApiError as exc:
        ledger.audit(actor, "publish_failed", None, {"target": target, "draft": draft_id, "error": str(exc)})
        raise HTTPException(exc.status if exc.status in (403, 404, 409) else status.HTTP_502_BAD_GATEWAY,
                            str(exc)) from None
    ledger.audit(actor, "publish_requested", None, {"target": target, "draft": draft_id, "pid": draft.pid,
                                                    "datasets": draft.datasets, "dag_run_id": run.get("dag_run_id")})
    for uid in draft.datasets:
        log.info("dataset %s: %s asked to publish %s draft %s (%s)", uid, actor, target, draft_id, draft.pid)
    msg = f"Publishing {draft.pid or draft_id}: {DEPOSIT_DAG} run {run.get('dag_run_id')} started"
    return RedirectResponse(f"{base_url(request)}/publish?msg={q(msg)}", status_code=status.HTTP_303_SEE_OTHER)
