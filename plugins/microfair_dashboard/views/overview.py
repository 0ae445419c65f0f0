"""The overview (``/``) and the 3-2-1 & retention page (``/compliance``)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from microfair.monitor import AirflowApiError, compliance, failures, filter_choices, overview
from microfair.monitor.charts import throughput_svg
from microfair.monitor.forecast_charts import forecast_context
from microfair_dashboard.deps import Api, FacilityDep, HasConnection, Loaded, MayClear
from microfair_dashboard.security import Reader
from microfair_dashboard.views.common import airflow_states

router = APIRouter()
log = logging.getLogger(__name__)
#: The ingest DAGs, and their tasks that fail while a landing zone is missing.
INGEST_DAGS = ["microfair_ingest", "microfair_ingest_batched"]
ZONE_TASKS = ["discover", "landing_zones_mounted"]


def failed_discover_tasks(api: Any) -> list[dict[str, Any]]:
    """Failed ``discover`` task instances of the last day (asked only while a landing zone is missing)."""
    try:
        return api.failed_task_instances(INGEST_DAGS, ZONE_TASKS, since=datetime.now(timezone.utc) - timedelta(days=1))
    except AirflowApiError as exc:
        log.warning("dashboard: failed discover tasks unavailable: %s", exc)
        return []


@router.get("/", response_class=HTMLResponse)
def overview_page(request: Request, user: Reader, loaded: Loaded, fac: FacilityDep, api: Api, may: MayClear,
                  has_conn: HasConnection, microscope: str | None = None,
                  project: str | None = None) -> HTMLResponse:
    from microfair_dashboard.app import render

    cfg, ledger = loaded
    microscope, project = microscope or None, project or None
    # The failed items first, so that Airflow's REST API is asked for their state while the
    # ledger's aggregates are computed (the two waits overlap instead of adding up).
    failed = failures(ledger, microscope=microscope, project=project)
    states_later = request.app.state.api_pool.submit(airflow_states, api, [f for f in failed[0] if f.task_id])
    ov = overview(cfg, ledger, microscope=microscope, project=project, days=cfg.dashboard.throughput_days,
                  failed=failed)
    states = states_later.result()
    missing = [b for b in ov.backlog if b.missing]
    discover_failed = failed_discover_tasks(api) if missing else []
    return render(request, "overview.html", user, ov=ov, chart=throughput_svg(ov.throughput),
                  choices=filter_choices(ledger), microscope=microscope or "", project=project or "",
                  airflow_states=states, can_clear={f.event_id: may(user, f.dag_id or ("microfair_ingest" if f.quarantined else None))
                             for f in ov.failures},
                  missing_zones=missing, discover_failed=discover_failed, availability=fac.availability(has_conn),
                  **forecast_context(cfg, ledger))


@router.get("/compliance", response_class=HTMLResponse)
def compliance_page(request: Request, user: Reader, loaded: Loaded, fac: FacilityDep,
                    has_conn: HasConnection) -> HTMLResponse:
    from microfair_dashboard.app import render

    cfg, ledger = loaded
    return render(request, "compliance.html", user, c=compliance(cfg, ledger), availability=fac.availability(has_conn))
