"""Helpers shared by the views: task-instance references and Airflow task states."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from fastapi import Request

from microfair.monitor import AirflowApiError, TaskInstanceRef

log = logging.getLogger(__name__)


def ref(ev: Any) -> TaskInstanceRef:
    mi = ev.map_index if ev.map_index is not None else -1
    return TaskInstanceRef(ev.dag_id, ev.run_id, ev.task_id, mi)


def ref_dict(r: TaskInstanceRef) -> dict[str, Any]:
    return {"dag_id": r.dag_id, "run_id": r.run_id, "task_id": r.task_id, "map_index": r.map_index}


def airflow_states(api: Any, events: list[Any]) -> dict[int, Any]:
    """Current Airflow state of each failed item's task instance (REST API, as the user)."""
    refs = {e.event_id if hasattr(e, "event_id") else e.id: ref(e) for e in events if e.task_id}
    if not refs:
        return {}
    try:
        states = api.task_instance_states(list(set(refs.values())))
    except AirflowApiError as exc:
        log.warning("dashboard: Airflow task states unavailable: %s", exc)
        return {k: "unknown (API unreachable)" for k in refs}
    return {k: (states.get(r) or "not in Airflow") for k, r in refs.items()}


def base_url(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


def params(request: Request) -> dict[str, str]:
    return {k: v for k, v in request.query_params.items() if v and k != "page"}


def q(s: str) -> str:
    return quote(s, safe="")
