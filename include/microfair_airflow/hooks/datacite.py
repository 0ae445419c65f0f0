"""DataciteHook: a DataCite REST client from an Airflow connection (optional: no connection, no draft DOI).

Connection ``datacite_default`` (type ``datacite``; ``http`` works too) (``datacite.connection_id``): ``host`` = ``https://api.test.datacite.org``
or ``https://api.datacite.org``; ``login`` = repository id; ``password`` = repository password.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook

from microfair.deposit import DataciteClient
from microfair_airflow.provider import ui_field_behaviour


class DataciteHook(BaseHook):
    """:param datacite_conn_id: the Airflow connection of the DataCite repository account."""

    conn_name_attr = "datacite_conn_id"
    default_conn_name = "datacite_default"
    conn_type = "datacite"
    hook_name = "DataCite REST API"

    def __init__(self, datacite_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.datacite_conn_id = datacite_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form (Airflow 3.2+ reads the same declaration from the provider info)."""
        return ui_field_behaviour(cls.conn_type)

    def get_conn(self, timeout: float = 60.0) -> DataciteClient:
        conn = self.get_connection(self.datacite_conn_id)
        host = (conn.host or "api.datacite.org").rstrip("/")
        url = host if "://" in host else f"https://{host}"
        return DataciteClient(url, conn.login or "", conn.password or "", timeout=timeout)

    def test_connection(self, timeout: float = 15.0) -> tuple[bool, str]:
        """``GET /clients/<repository id>`` with the account (the "Test" button); the password is never shown."""
        password = ""
        try:
            password = self.get_connection(self.datacite_conn_id).password or ""
            client = self.get_conn(timeout=timeout)
            if not client.repository_id:
                return False, "the DataCite connection has no repository id (login)"
            # DataCite refuses wrong credentials (401) even on this public record, so it tests the account.
            info = client._call("GET", f"clients/{client.repository_id}")  # noqa: SLF001 - the client's own errors
            name = (info.get("data", {}).get("attributes", {}) or {}).get("name") or client.repository_id
            return True, f"DataCite at {client.base_url} knows repository {client.repository_id} ({name})"
        except Exception as exc:  # noqa: BLE001 - shown to the user, who needs the reason
            message = f"{type(exc).__name__}: {exc}"
            return False, message.replace(password, "***") if password else message

    @classmethod
    def configured(cls, conn_id: str) -> bool:
        """True when the connection exists (then a draft DOI is created)."""
        try:
            cls.get_connection(conn_id)
        except Exception:  # AirflowNotFoundException and friends
            return False
        return True
