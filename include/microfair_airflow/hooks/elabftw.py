"""ElabftwHook: an eLabFTW REST API v2 client from an Airflow connection (optional: no connection, links only).

Connection ``elabftw_default`` (type ``elabftw``; ``eln.connection_id``): ``host`` = the instance's address
(``https://eln.example.org``); ``password`` = an API key with write access (eLabFTW: Settings → API keys).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook

from microfair.eln.elabftw import ElabftwClient
from microfair_airflow.provider import ui_field_behaviour


class ElabftwHook(BaseHook):
    """:param elabftw_conn_id: the Airflow connection of the eLabFTW instance."""

    conn_name_attr = "elabftw_conn_id"
    default_conn_name = "elabftw_default"
    conn_type = "elabftw"
    hook_name = "eLabFTW (electronic lab notebook)"

    def __init__(self, elabftw_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.elabftw_conn_id = elabftw_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return ui_field_behaviour(cls.conn_type)

    def get_conn(self, timeout: float = 20.0) -> ElabftwClient:
        conn = self.get_connection(self.elabftw_conn_id)
        host = (conn.host or "").rstrip("/")
        if not host:
            raise ValueError(f"connection {self.elabftw_conn_id!r} has no host (the eLabFTW address)")
        url = host if "://" in host else f"https://{host}"
        if conn.port and f":{conn.port}" not in url.split("://", 1)[1]:
            url = f"{url}:{conn.port}"
        return ElabftwClient(url, conn.password or "", timeout=timeout)

    def test_connection(self, timeout: float = 15.0) -> tuple[bool, str]:
        """``GET /api/v2/info`` with the key (the "Test" button); the key is never shown."""
        key = ""
        try:
            key = self.get_connection(self.elabftw_conn_id).password or ""
            client = self.get_conn(timeout=timeout)
            info = client.info()
            return True, f"eLabFTW {info.get('elabftw_version', '?')} at {client.base_url} accepted the API key"
        except Exception as exc:  # noqa: BLE001 - shown to the user, who needs the reason
            message = f"{type(exc).__name__}: {exc}"
            return False, message.replace(key, "***") if key else message

    @classmethod
    def client_or_reason(cls, conn_id: str) -> tuple[ElabftwClient | None, str]:
        """The client, or None and why (no such connection): the post-backs then stay pending."""
        try:
            return cls(conn_id).get_conn(), ""
        except Exception as exc:  # noqa: BLE001 - AirflowNotFoundException and friends
            return None, f"no usable eLabFTW connection {conn_id!r} ({type(exc).__name__})"
