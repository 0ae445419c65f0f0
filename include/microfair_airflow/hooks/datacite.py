"""DataciteHook: a DataCite REST client from an Airflow connection (optional: no connection, no draft DOI).

Connection ``datacite_default`` (``datacite.connection_id``): ``host`` = ``https://api.test.datacite.org``
or ``https://api.datacite.org``; ``login`` = repository id; ``password`` = repository password.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook

from microfair.deposit import DataciteClient


class DataciteHook(BaseHook):
    """:param datacite_conn_id: the Airflow connection of the DataCite repository account."""

    conn_name_attr = "datacite_conn_id"
    default_conn_name = "datacite_default"
    conn_type = "http"
    hook_name = "DataCite REST API"

    def __init__(self, datacite_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.datacite_conn_id = datacite_conn_id

    def get_conn(self) -> DataciteClient:
        conn = self.get_connection(self.datacite_conn_id)
        host = (conn.host or "api.datacite.org").rstrip("/")
        url = host if "://" in host else f"https://{host}"
        return DataciteClient(url, conn.login or "", conn.password or "")

    @classmethod
    def configured(cls, conn_id: str) -> bool:
        """True when the connection exists (then a draft DOI is created)."""
        try:
            cls.get_connection(conn_id)
        except Exception:  # AirflowNotFoundException and friends
            return False
        return True
