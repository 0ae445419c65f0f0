"""A small client of Airflow's public REST API (``/api/v2``), acting as one user through their JWT.

The dashboard never talks to Airflow's metadata database: it asks the REST API, with
the logged-in user's token, so Airflow's own permission checks apply to every call.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

log = logging.getLogger(__name__)


class AirflowApiError(RuntimeError):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class TaskInstanceRef:
    """Exactly one task instance: a task of one DAG run, down to its map index (-1 when not mapped)."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1

    @property
    def label(self) -> str:
        idx = f"[{self.map_index}]" if self.map_index >= 0 else ""
        return f"{self.dag_id} / {self.run_id} / {self.task_id}{idx}"


class AirflowApi:
    def __init__(self, base_url: str, token: str, *, timeout: float = 10.0,
                 session: requests.Session | None = None) -> None:
        self.base = base_url.rstrip("/") + "/api/v2"
        self.timeout = timeout
        self.http = session or requests.Session()
        self.http.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/json"})
        self.http.trust_env = False  # the API is on this host or the facility network, never through a proxy

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        url = self.base + path
        try:
            r = self.http.request(method, url, timeout=self.timeout, **kw)
        except requests.RequestException as exc:
            raise AirflowApiError(f"Airflow API unreachable at {self.base}: {type(exc).__name__}") from None
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail")
            except ValueError:
                detail = r.text[:300]
            raise AirflowApiError(f"Airflow API {method} {path}: HTTP {r.status_code}: {detail}", r.status_code)
        return r.json() if r.content else None

    def clear_task_instance(self, ti: TaskInstanceRef, *, dry_run: bool, note: str | None = None) -> list[dict]:
        """clearTaskInstances for exactly ``ti`` (only if failed; no upstream/downstream/past/future)."""
        body: dict[str, Any] = {
            "dry_run": dry_run,
            "dag_run_id": ti.run_id,
            "task_ids": [[ti.task_id, ti.map_index]],
            "only_failed": True,
            "include_upstream": False,
            "include_downstream": False,
            "include_future": False,
            "include_past": False,
            "reset_dag_runs": True,
        }
        if note and not dry_run:
            body["note"] = note[:1000]
        out = self._call("POST", f"/dags/{quote(ti.dag_id, safe='')}/clearTaskInstances", json=body)
        return list((out or {}).get("task_instances") or [])

    def task_instance(self, ti: TaskInstanceRef) -> dict[str, Any]:
        path = (f"/dags/{quote(ti.dag_id, safe='')}/dagRuns/{quote(ti.run_id, safe='')}/taskInstances/"
                f"{quote(ti.task_id, safe='')}")
        if ti.map_index >= 0:
            path += f"/{ti.map_index}"
        return self._call("GET", path)

    def task_instance_states(self, refs: list[TaskInstanceRef]) -> dict[TaskInstanceRef, str | None]:
        """Current state of each task instance, in one batch call."""
        if not refs:
            return {}
        body = {"dag_ids": sorted({r.dag_id for r in refs}), "dag_run_ids": sorted({r.run_id for r in refs}),
                "task_ids": sorted({r.task_id for r in refs}), "page_limit": 1000}
        out = self._call("POST", "/dags/~/dagRuns/~/taskInstances/list", json=body)
        found = {(t["dag_id"], t["dag_run_id"], t["task_id"], t.get("map_index", -1)): t.get("state")
                 for t in (out or {}).get("task_instances", [])}
        return {r: found.get((r.dag_id, r.run_id, r.task_id, r.map_index)) for r in refs}

    def recent_dag_runs(self, limit: int = 10, dag_id_prefix: str = "microfair") -> list[dict[str, Any]]:
        out = self._call("GET", "/dags/~/dagRuns",
                         params={"limit": limit, "order_by": "-run_after", "dag_id_pattern": dag_id_prefix})
        return list((out or {}).get("dag_runs") or [])

    def dag(self, dag_id: str) -> dict[str, Any]:
        """``GET /dags/{dag_id}``: is_paused, max_active_runs, …"""
        return self._call("GET", f"/dags/{quote(dag_id, safe='')}") or {}

    def active_dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        """The DAG's runs that are running or queued."""
        out = self._call("GET", f"/dags/{quote(dag_id, safe='')}/dagRuns",
                         params=[("state", "running"), ("state", "queued"), ("limit", "100")])
        return list((out or {}).get("dag_runs") or [])

    def trigger_dag_run(self, dag_id: str, *, note: str | None = None,
                        conf: dict[str, Any] | None = None) -> dict[str, Any]:
        """A new manual run of ``dag_id`` (what the UI's trigger button does), with its params in ``conf``."""
        body: dict[str, Any] = {"logical_date": None, **({"conf": conf} if conf else {})}
        if note:
            body["note"] = note[:1000]
        return self._call("POST", f"/dags/{quote(dag_id, safe='')}/dagRuns", json=body) or {}

    def failed_task_instances(self, dag_ids: list[str], task_ids: list[str], *, since: Any = None,
                              limit: int = 5) -> list[dict[str, Any]]:
        """The newest failed instances of these tasks (e.g. ``discover`` when a landing zone is missing)."""
        body: dict[str, Any] = {"dag_ids": dag_ids, "task_ids": task_ids, "state": ["failed"],
                                "order_by": "-start_date", "page_limit": limit}
        if since is not None:
            body["start_date_gte"] = since.isoformat()
        out = self._call("POST", "/dags/~/dagRuns/~/taskInstances/list", json=body)
        return list((out or {}).get("task_instances") or [])


def run_blockers(api: Any, dag_id: str, *, own_run_id: str | None = None) -> list[str]:
    """Why a re-run of ``dag_id`` would not start now: a paused DAG, or runs ahead of it under max_active_runs.

    Asks Airflow's REST API (``GET /dags/{dag_id}``, running and queued ``dagRuns``). An unreachable API
    is a warning of its own: the dashboard cannot promise that anything will run.
    """
    try:
        dag = api.dag(dag_id)
        runs = [r for r in api.active_dag_runs(dag_id) if r.get("dag_run_id") != own_run_id]
    except AirflowApiError as exc:
        if exc.status == 404:
            return [f"The DAG {dag_id} is not in Airflow: nothing will run it."]
        return [f"Airflow cannot say whether {dag_id} will run: {exc}"]
    out = []
    if dag.get("is_paused"):
        out.append(f"The DAG {dag_id} is paused: nothing will run until it is unpaused in Airflow.")
    limit = dag.get("max_active_runs")
    running = [r for r in runs if r.get("state") == "running"]
    if limit and len(running) >= int(limit):
        names = ", ".join(str(r.get("dag_run_id")) for r in running[:5])
        out.append(f"{len(running)} run(s) of {dag_id} are running ({names}) and max_active_runs is {limit}: "
                   "this run waits behind them.")
    elif limit and len(runs) >= int(limit):
        names = ", ".join(str(r.get("dag_run_id")) for r in runs[:5])
        out.append(f"{len(runs)} run(s) of {dag_id} are running or queued ({names}) and max_active_runs is "
                   f"{limit}: this run waits behind them.")
    return out
