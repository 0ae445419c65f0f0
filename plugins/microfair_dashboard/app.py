"""The dashboard's FastAPI app, mounted by Airflow's API server under ``/microfair``.

Every route depends on :data:`microfair_dashboard.security.Reader` (Airflow
authentication + read permission), including the static files. Pages are rendered
on the server (Jinja2, SVG charts); htmx re-renders the page body when the ledger
changes (server-sent events on ``/events``).
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anyio import to_thread
from fastapi import FastAPI, Form, HTTPException, Query, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates

from microfair.config import FacilityConfig, load_config
from microfair.ledger import STAGES, Ledger
from microfair.monitor import (
    NOT_CONFIGURED,
    STAGE_TITLES,
    AirflowApi,
    AirflowApiError,
    DatasetQuery,
    TaskInstanceRef,
    change_token,
    compliance,
    dataset_detail,
    dataset_page,
    failures,
    filter_choices,
    get_event,
    human_bytes,
    overview,
    stage_availability,
)
from microfair.monitor.charts import throughput_svg
from microfair.monitor.datasets import STAGE_STATES, qc_channels, qc_thumbnails
from microfair.monitor.records import other_records, record_view
from microfair_dashboard.security import (
    Reader,
    check_confirm_token,
    confirm_token,
    login_url,
    may_clear,
    user_token,
)

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
URL_PREFIX = "/microfair"


@dataclass
class Facility:
    """The configuration and ledger, loaded on first use (a bad config shows an error page, not a crash)."""

    cfg: FacilityConfig | None = None
    ledger: Ledger | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _avail: tuple[float, Any] | None = None
    _token: tuple[float, str] | None = None

    def load(self) -> tuple[FacilityConfig, Ledger]:
        with self._lock:
            if self.cfg is None or self.ledger is None:
                cfg = load_config()
                self.ledger = Ledger(cfg.ledger.url, migrate=False)
                self.cfg = cfg
        return self.cfg, self.ledger

    def availability(self) -> Any:
        cfg, ledger = self.load()
        now = time.monotonic()
        if self._avail is None or now - self._avail[0] > 60:
            self._avail = (now, stage_availability(cfg, ledger, has_connection=_has_connection))
        return self._avail[1]

    def token(self) -> str:
        """The ledger's change token, shared by every open page (at most one query per half-interval)."""
        cfg, ledger = self.load()
        now = time.monotonic()
        if self._token is None or now - self._token[0] > cfg.dashboard.refresh_seconds / 2:
            self._token = (now, change_token(ledger))
        return self._token[1]


def _has_connection(conn_id: str) -> bool:
    try:
        from airflow.models.connection import Connection

        Connection.get_connection_from_secrets(conn_id)
        return True
    except Exception:
        return False


def _api_base(cfg: FacilityConfig, request: Request) -> str:
    if cfg.dashboard.airflow_api_url:
        return cfg.dashboard.airflow_api_url
    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="") or ""
    if base.startswith("http"):
        return base
    return f"{request.url.scheme}://{request.url.netloc}"


def create_app() -> FastAPI:
    app = FastAPI(title="microfair dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    facility = Facility()
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["bytes"] = human_bytes
    templates.env.filters["dt"] = lambda d: d.strftime("%Y-%m-%d %H:%M") if d else "–"
    templates.env.globals.update(STAGES=STAGES, STAGE_TITLES=STAGE_TITLES, NOT_CONFIGURED=NOT_CONFIGURED,
                                 STAGE_STATES=STAGE_STATES)
    app.state.facility = facility
    api_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="microfair-airflow-api")

    def render(request: Request, name: str, user: Any, status_code: int = 200, **ctx: Any) -> HTMLResponse:
        cfg = facility.cfg
        return templates.TemplateResponse(request, name, {
            "base": request.scope.get("root_path", "").rstrip("/"), "user": user,
            "username": getattr(user, "get_name", lambda: str(user))(),
            "refresh_seconds": cfg.dashboard.refresh_seconds if cfg else 10,
            "facility_name": cfg.facility.name if cfg else "microfair",
            "vendor_ok": (STATIC / "vendor" / "htmx.min.js").is_file(), **ctx}, status_code=status_code)

    @app.exception_handler(HTTPException)
    async def _http_errors(request: Request, exc: HTTPException) -> Response:
        if "text/html" in request.headers.get("accept", "") and exc.status_code in (401, 403):
            msg = "Please log in to Airflow first." if exc.status_code == 401 else str(exc.detail)
            link = login_url(request) if exc.status_code == 401 else request.scope.get("root_path", "") + "/"
            body = (f"<!doctype html><title>microfair</title><h1>{exc.status_code}</h1><p>{_esc(msg)}</p>"
                    f'<p><a href="{_esc(link)}">{"Log in" if exc.status_code == 401 else "Back"}</a></p>')
            return HTMLResponse(body, status_code=exc.status_code)
        return await http_exception_handler(request, exc)

    def load() -> tuple[FacilityConfig, Ledger]:
        try:
            return facility.load()
        except Exception as exc:
            log.exception("dashboard: cannot load the facility configuration or the ledger")
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                                f"microfair configuration or ledger unavailable: {exc}") from None

    # -- pages ---------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse)
    def overview_page(request: Request, user: Reader, microscope: str | None = None,
                      project: str | None = None) -> HTMLResponse:
        cfg, ledger = load()
        microscope, project = microscope or None, project or None
        # The failed items first, so that Airflow's REST API is asked for their state while the
        # ledger's aggregates are computed (the two waits overlap instead of adding up).
        failed = failures(ledger, microscope=microscope, project=project)
        states_later = api_pool.submit(_airflow_states, cfg, request, user, [f for f in failed[0] if f.rerunnable])
        ov = overview(cfg, ledger, microscope=microscope, project=project, days=cfg.dashboard.throughput_days,
                      failed=failed)
        states = states_later.result()
        return render(request, "overview.html", user, ov=ov, chart=throughput_svg(ov.throughput),
                      choices=filter_choices(ledger), microscope=microscope or "", project=project or "",
                      airflow_states=states, can_clear={f.event_id: may_clear(user, f.dag_id) for f in ov.failures},
                      availability=facility.availability())

    @app.get("/datasets", response_class=HTMLResponse)
    def datasets_page(request: Request, user: Reader, q: str | None = None, microscope: str | None = None,
                      project: str | None = None, state: str | None = None, stage: str | None = None,
                      stage_state: str | None = None, page: int = Query(1, ge=1),
                      page_size: int | None = Query(None, ge=5, le=500)) -> HTMLResponse:
        cfg, ledger = load()
        try:
            query = DatasetQuery(q=q, microscope=microscope or None, project=project or None, state=state or None,
                                 stage=stage or None, stage_state=stage_state or None, page=page,
                                 page_size=page_size or cfg.dashboard.page_size)
        except ValueError as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
        availability = facility.availability()
        result = dataset_page(ledger, query, availability)
        return render(request, "datasets.html", user, result=result, choices=filter_choices(ledger),
                      availability=availability, params=_params(request))

    @app.get("/datasets/{uid}", response_class=HTMLResponse)
    def dataset_page_view(request: Request, uid: str, user: Reader, msg: str | None = None) -> HTMLResponse:
        cfg, ledger = load()
        detail = dataset_detail(ledger, uid, facility.availability())
        if detail is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dataset {uid!r} in the ledger")
        failed = [e for e in detail.events if e.id in detail.failed_now and e.task_id]
        refs = {e.id: _ref(e) for e in failed}
        states = _airflow_states(cfg, request, user, failed)
        qc = detail.records.get("qc")
        views = {k: record_view(k, detail.records[k]) for k in ("irods", "bia", "datacite") if k in detail.records}
        return render(request, "dataset.html", user, d=detail, ds=detail.dataset, msg=msg,
                      views=views, others=other_records(detail.records),
                      thumbnails=qc_thumbnails(qc), channels=qc_channels(qc),
                      can_clear={e.id: may_clear(user, e.dag_id) for e in failed}, refs=refs,
                      airflow_states=states, availability=facility.availability())

    @app.get("/datasets/{uid}/thumbnails/{n}")
    def thumbnail(uid: str, n: int, user: Reader) -> FileResponse:
        cfg, ledger = load()
        thumbs = qc_thumbnails(ledger.get_record(uid, "qc"))
        if not 0 <= n < len(thumbs):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such thumbnail")
        path = Path(thumbs[n][1])
        if not path.is_absolute():
            path = cfg.storage.reports / path
        real = Path(os.path.realpath(path))
        allowed = [Path(os.path.realpath(cfg.storage.reports)), Path(os.path.realpath(cfg.storage.converted))]
        if not any(real.is_relative_to(a) for a in allowed) or not real.is_file():
            raise HTTPException(status.HTTP_404_NOT_FOUND, "thumbnail not found in the reports tree")
        return FileResponse(real, media_type=mimetypes.guess_type(real.name)[0] or "application/octet-stream")

    @app.get("/compliance", response_class=HTMLResponse)
    def compliance_page(request: Request, user: Reader) -> HTMLResponse:
        cfg, ledger = load()
        return render(request, "compliance.html", user, c=compliance(cfg, ledger),
                      availability=facility.availability())

    # -- re-run --------------------------------------------------------------------------
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
        return ev, uid, _ref(ev)

    @app.get("/rerun/{event_id}", response_class=HTMLResponse)
    def rerun_confirm(request: Request, event_id: int, user: Reader) -> HTMLResponse:
        cfg, ledger = load()
        ev, uid, ref = _rerun_target(ledger, event_id)
        if not may_clear(user, ref.dag_id):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"you may not clear task instances of {ref.dag_id}")
        preview, problem = [], None
        try:
            api = AirflowApi(_api_base(cfg, request), user_token(request, user),
                             timeout=cfg.dashboard.api_timeout_seconds)
            preview = api.clear_task_instance(ref, dry_run=True)
        except AirflowApiError as exc:
            problem = str(exc)
        return render(request, "confirm.html", user, ev=ev, uid=uid, ref=ref, preview=preview, problem=problem,
                      token=confirm_token(user, event_id))

    @app.post("/rerun/{event_id}")
    def rerun(request: Request, event_id: int, user: Reader, confirm: str | None = Form(None)) -> Response:
        cfg, ledger = load()
        ev, uid, ref = _rerun_target(ledger, event_id)
        actor = user.get_name()
        if not may_clear(user, ref.dag_id):
            ledger.audit(actor, "rerun_refused", uid, {"event_id": event_id, "reason": "no edit permission",
                                                        **_ref_dict(ref)})
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"you may not clear task instances of {ref.dag_id}")
        check_confirm_token(confirm, user, event_id)
        api = AirflowApi(_api_base(cfg, request), user_token(request, user), timeout=cfg.dashboard.api_timeout_seconds)
        try:
            cleared = api.clear_task_instance(ref, dry_run=False,
                                              note=f"re-run from the microfair dashboard by {actor}")
        except AirflowApiError as exc:
            ledger.audit(actor, "rerun_failed", uid, {"event_id": event_id, "error": str(exc), **_ref_dict(ref)})
            log.error("dataset %s: re-run of %s by %s failed: %s", uid, ref.label, actor, exc)
            raise HTTPException(exc.status if exc.status in (403, 404, 409) else status.HTTP_502_BAD_GATEWAY,
                                str(exc)) from None
        ledger.audit(actor, "rerun", uid, {"event_id": event_id, "stage": ev.stage, **_ref_dict(ref),
                                           "cleared": [{"task_id": t.get("task_id"), "map_index": t.get("map_index"),
                                                        "run_id": t.get("dag_run_id")} for t in cleared]})
        log.info("dataset %s: %s cleared %s (%d task instance(s)) from the dashboard", uid, actor, ref.label,
                 len(cleared))
        msg = f"Re-run requested: {ref.label} cleared" if cleared else f"Nothing cleared: {ref.label} is not failed"
        base = request.scope.get("root_path", "").rstrip("/")
        target = f"{base}/datasets/{uid}" if uid else f"{base}/"
        return RedirectResponse(f"{target}?msg={_q(msg)}", status_code=status.HTTP_303_SEE_OTHER)

    # -- live updates and static files ------------------------------------------------------
    @app.get("/events")
    async def events(request: Request, user: Reader) -> StreamingResponse:
        cfg, _ = await to_thread.run_sync(load)

        async def stream() -> AsyncIterator[str]:
            last = None
            yield f"retry: {cfg.dashboard.refresh_seconds * 1000}\n\n"
            while not await request.is_disconnected():
                token = await to_thread.run_sync(facility.token)
                if token != last:
                    if last is not None:
                        yield f"event: ledger\ndata: {token}\n\n"
                    last = token
                else:
                    yield ": keep-alive\n\n"
                await asyncio.sleep(cfg.dashboard.refresh_seconds)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.get("/static/{path:path}")
    def static(path: str, user: Reader) -> FileResponse:
        real = Path(os.path.realpath(STATIC / path))
        if not real.is_relative_to(STATIC.resolve()) or not real.is_file():
            raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
        return FileResponse(real, media_type=mimetypes.guess_type(real.name)[0] or "application/octet-stream",
                            headers={"Cache-Control": "private, max-age=3600"})

    def _airflow_states(cfg: FacilityConfig, request: Request, user: Any, events: list[Any]) -> dict[int, Any]:
        """Current Airflow state of each failed item's task instance (REST API, as the user)."""
        refs = {e.event_id if hasattr(e, "event_id") else e.id: _ref(e) for e in events}
        if not refs:
            return {}
        try:
            api = AirflowApi(_api_base(cfg, request), user_token(request, user), timeout=3)
            states = api.task_instance_states(list(set(refs.values())))
        except AirflowApiError as exc:
            log.warning("dashboard: Airflow task states unavailable: %s", exc)
            return {k: "unknown (API unreachable)" for k in refs}
        return {k: (states.get(r) or "not in Airflow") for k, r in refs.items()}

    return app


def _ref(ev: Any) -> TaskInstanceRef:
    mi = ev.map_index if ev.map_index is not None else -1
    return TaskInstanceRef(ev.dag_id, ev.run_id, ev.task_id, mi)


def _ref_dict(ref: TaskInstanceRef) -> dict[str, Any]:
    return {"dag_id": ref.dag_id, "run_id": ref.run_id, "task_id": ref.task_id, "map_index": ref.map_index}


def _params(request: Request) -> dict[str, str]:
    return {k: v for k, v in request.query_params.items() if v and k != "page"}


def _q(s: str) -> str:
    from urllib.parse import quote

    return quote(s, safe="")


def _esc(s: str) -> str:
    from html import escape

    return escape(s, quote=True)
