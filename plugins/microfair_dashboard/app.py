"""The dashboard's FastAPI app, mounted by Airflow's API server under ``/microfair``.

One router per view (:mod:`microfair_dashboard.views`); the facility, Airflow's REST API
and the permission check are dependencies (:mod:`microfair_dashboard.deps`). Every route
depends on :data:`microfair_dashboard.security.Reader` (Airflow authentication + read
permission), including the static files. Pages are rendered on the server (Jinja2, SVG
charts); htmx re-renders the page body when the ledger changes (server-sent events on ``/events``).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from html import escape
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from microfair.ledger import STAGES
from microfair.monitor import NOT_CONFIGURED, STAGE_TITLES
from microfair.monitor.datasets import STAGE_STATES
from microfair.units import format_bytes
from microfair_dashboard.deps import Facility
from microfair_dashboard.security import login_url

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
URL_PREFIX = "/microfair"


def _dt(d: Any) -> str:
    return d.strftime("%Y-%m-%d %H:%M") if d else "–"


def create_app() -> FastAPI:
    from microfair_dashboard.views import datasets, live, overview, publish, rerun

    app = FastAPI(title="microfair dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["bytes"] = format_bytes
    templates.env.filters["dt"] = _dt
    templates.env.globals.update(STAGES=STAGES, STAGE_TITLES=STAGE_TITLES, NOT_CONFIGURED=NOT_CONFIGURED,
                                 STAGE_STATES=STAGE_STATES)
    app.state.facility = Facility()
    app.state.templates = templates
    app.state.api_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="microfair-airflow-api")

    @app.exception_handler(HTTPException)
    async def _http_errors(request: Request, exc: HTTPException) -> Response:
        if "text/html" in request.headers.get("accept", "") and exc.status_code in (401, 403):
            msg = "Please log in to Airflow first." if exc.status_code == 401 else str(exc.detail)
            link = login_url(request) if exc.status_code == 401 else request.scope.get("root_path", "") + "/"
            body = (f"<!doctype html><title>microfair</title><h1>{exc.status_code}</h1><p>{escape(msg)}</p>"
                    f'<p><a href="{escape(link)}">{"Log in" if exc.status_code == 401 else "Back"}</a></p>')
            return HTMLResponse(body, status_code=exc.status_code)
        return await http_exception_handler(request, exc)

    for module in (overview, datasets, rerun, live, publish):
        app.include_router(module.router)
    return app


def render(request: Request, name: str, user: Any, status_code: int = 200, **ctx: Any) -> HTMLResponse:
    """A page of the dashboard, with what every page needs (base URL, user, refresh interval)."""
    cfg = request.app.state.facility.cfg
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, name, {
        "base": request.scope.get("root_path", "").rstrip("/"), "user": user,
        "username": getattr(user, "get_name", lambda: str(user))(),
        "refresh_seconds": cfg.dashboard.refresh_seconds if cfg else 10,
        "facility_name": cfg.facility.name if cfg else "microfair",
        "vendor_ok": (STATIC / "vendor" / "htmx.min.js").is_file(), **ctx}, status_code=status_code)
