"""The microfair dashboard: an Airflow 3 plugin (FastAPI app under /microfair) and the alert listener.

Registered by ``plugins/microfair_dashboard_plugin.py``. The views' data come from
:mod:`microfair.monitor` (plain Python over the ledger).
"""

URL_PREFIX = "/microfair"
