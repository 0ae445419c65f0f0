"""Monitoring: the ledger queries behind the dashboard, and the alert notifiers.

Plain Python over the ledger (no Airflow import), so every view and every alert can be
tested without Airflow. The Airflow plugin in ``plugins/microfair_dashboard`` renders
these results and adds authentication, permissions and the REST API calls.
"""

from microfair.monitor.airflow_api import AirflowApi, AirflowApiError, TaskInstanceRef
from microfair.monitor.alerts import (
    Alert,
    EmailNotifier,
    WebhookNotifier,
    notifiers_from_connections,
    run_alert_scan,
    scan_alerts,
    send_alerts,
)
from microfair.monitor.compliance import Compliance, compliance
from microfair.monitor.datasets import DatasetDetail, DatasetPage, DatasetQuery, dataset_detail, dataset_page, get_event
from microfair.monitor.live import change_token
from microfair.monitor.overview import Overview, failures, filter_choices, human_bytes, overview
from microfair.monitor.stages import NOT_CONFIGURED, STAGE_TITLES, StageAvailability, stage_availability

__all__ = ["NOT_CONFIGURED", "STAGE_TITLES", "AirflowApi", "AirflowApiError", "Alert", "Compliance",
           "DatasetDetail", "DatasetPage", "DatasetQuery", "EmailNotifier", "Overview", "StageAvailability",
           "TaskInstanceRef", "WebhookNotifier", "change_token", "compliance", "dataset_detail", "dataset_page",
           "failures", "filter_choices", "get_event", "human_bytes", "notifiers_from_connections", "overview",
           "run_alert_scan", "scan_alerts", "send_alerts", "stage_availability"]
