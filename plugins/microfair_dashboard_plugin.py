"""Registers the microfair dashboard with Airflow 3: a FastAPI app under /microfair, its entry
in the Airflow navigation bar (opens inside the Airflow UI), and the alert listener."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from microfair_dashboard import URL_PREFIX
from microfair_dashboard.alerting import alert_listener


def _fastapi_apps() -> list[dict]:
    from microfair_dashboard.app import create_app

    return [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "microfair dashboard"}]


class MicrofairDashboardPlugin(AirflowPlugin):
    name = "microfair_dashboard"
    fastapi_apps = _fastapi_apps()
    external_views = [{
        "name": "microfair",
        "href": URL_PREFIX + "/",
        "url_route": "microfair",  # the Airflow UI shows the page in a frame at /plugin/microfair
        "destination": "nav",
        "nav_top_level": True,
        "icon": URL_PREFIX + "/static/icon.svg",
    }]
    listeners = [alert_listener]
