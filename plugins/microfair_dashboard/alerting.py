"""Alerts from Airflow: a listener that runs the alert scan after every microfair task.

Registered by the dashboard plugin (``listeners``), so DAG authors attach nothing. For
DAGs that want it explicitly, :func:`alert_on_failure` is also an ``on_failure_callback``.
The scan itself (:func:`microfair.monitor.alerts.run_alert_scan`) is domain code; here we
only supply the facility configuration, the ledger and Airflow connections.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.listeners import hookimpl

log = logging.getLogger(__name__)

DAG_PREFIX = "microfair"


def _get_connection(conn_id: str) -> Any:
    from airflow.sdk import BaseHook

    return BaseHook.get_connection(conn_id)


def scan_and_notify(reason: str = "") -> dict[str, Any]:
    """Load the facility config, scan the ledger for new alerts and send them. Never raises."""
    try:
        from microfair.config import load_config
        from microfair.ledger import Ledger
        from microfair.monitor.alerts import run_alert_scan

        cfg = load_config()
        if not cfg.alerts.enabled:
            return {"alerts": 0, "channels": {}}
        out = run_alert_scan(Ledger(cfg.ledger.url, migrate=False), cfg.alerts, _get_connection, cfg)
        if out["alerts"]:
            log.info("microfair alerts after %s: %s", reason or "task", out)
        return out
    except Exception:  # alerting must never fail the task it watches
        log.exception("microfair alerts: scan failed after %s", reason or "task")
        return {"alerts": 0, "channels": {}, "error": True}


def _dag_id(task_instance: Any) -> str:
    return str(getattr(task_instance, "dag_id", "") or "")


class AlertListener:
    """Airflow listener: scan after each task of a ``microfair*`` DAG ends (failed or succeeded)."""

    @hookimpl
    def on_task_instance_failed(self, previous_state: Any, task_instance: Any, error: Any) -> None:
        if _dag_id(task_instance).startswith(DAG_PREFIX):
            scan_and_notify(f"{_dag_id(task_instance)}.{getattr(task_instance, 'task_id', '?')} failed")

    @hookimpl
    def on_task_instance_success(self, previous_state: Any, task_instance: Any) -> None:
        # 3-2-1 verdicts change inside tasks that succeed (the policy check flags, it does not fail).
        if _dag_id(task_instance).startswith(DAG_PREFIX):
            scan_and_notify(f"{_dag_id(task_instance)}.{getattr(task_instance, 'task_id', '?')} ended")


alert_listener = AlertListener()


def alert_on_failure(context: dict[str, Any]) -> None:
    """``on_failure_callback`` for DAGs that do not rely on the plugin's listener."""
    ti = context.get("task_instance") or context.get("ti")
    scan_and_notify(f"{_dag_id(ti)}.{getattr(ti, 'task_id', '?')} failed (callback)")
