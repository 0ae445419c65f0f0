"""ZenodoHook: a Zenodo deposit target from an Airflow connection.

Connection ``zenodo_default`` (type ``zenodo``; ``http`` works too): ``host`` = ``https://zenodo.org`` or
``https://sandbox.zenodo.org``; ``password`` = a personal access token with the scopes ``deposit:write``
and ``deposit:actions`` (never logged); extras ``community``, ``max_files`` (100), ``max_bytes`` (50 GB).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook

from microfair.deposit.targets.connections import zenodo_target
from microfair_airflow.hooks.dataverse import fields_of
from microfair_airflow.provider import ui_field_behaviour


class ZenodoHook(BaseHook):
    """:param zenodo_conn_id: the Airflow connection of the Zenodo account (personal access token)."""

    conn_name_attr = "zenodo_conn_id"
    default_conn_name = "zenodo_default"
    conn_type = "zenodo"
    hook_name = "Zenodo deposition API"

    def __init__(self, zenodo_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.zenodo_conn_id = zenodo_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return ui_field_behaviour(cls.conn_type)

    def get_conn(self, **kw: Any) -> Any:
        return zenodo_target(fields_of(self.get_connection(self.zenodo_conn_id)), **kw)

    def test_connection(self) -> tuple[bool, str]:
        """List one deposition with the token (the "Test" button)."""
        token = ""
        try:
            conn = self.get_connection(self.zenodo_conn_id)
            token = conn.password or ""
            target = zenodo_target(fields_of(conn), retries=0, timeout=15.0)
            target._call("GET", "deposit/depositions", "GET depositions", params={"size": 1})  # noqa: SLF001
            return True, f"Zenodo at {target.base_url} accepts the token"
        except Exception as exc:  # noqa: BLE001 - shown to the user, who needs the reason
            message = f"{type(exc).__name__}: {exc}"
            return False, message.replace(token, "***") if token else message
