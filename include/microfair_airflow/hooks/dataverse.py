"""DataverseHook: a Dataverse (Recherche Data Gouv) deposit target from an Airflow connection.

Connection ``dataverse_default`` (type ``dataverse``; ``http`` works too): ``host`` = the installation,
e.g. ``https://entrepot.recherche.data.gouv.fr``; ``password`` = the API token (never logged); extras
``collection`` (alias), ``direct_upload`` (auto | true | false), ``max_files_per_request`` (1000),
``biomedical`` (true to fill the biomedical block). See :mod:`microfair.deposit.targets.connections`.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook

from microfair.deposit.targets.connections import ConnectionFields, dataverse_target
from microfair_airflow.provider import ui_field_behaviour


def fields_of(conn: Any) -> ConnectionFields:
    host = conn.host or ""
    if "://" not in host and host:
        host = f"{conn.schema if conn.schema in ('http', 'https') else 'https'}://{host}" + (
            f":{conn.port}" if conn.port else "")
    return ConnectionFields(host, conn.login or "", conn.password or "", dict(conn.extra_dejson or {}))


class DataverseHook(BaseHook):
    """:param dataverse_conn_id: the Airflow connection of the Dataverse account (API token)."""

    conn_name_attr = "dataverse_conn_id"
    default_conn_name = "dataverse_default"
    conn_type = "dataverse"
    hook_name = "Dataverse native API"

    def __init__(self, dataverse_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dataverse_conn_id = dataverse_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return ui_field_behaviour(cls.conn_type)

    def get_conn(self, **kw: Any) -> Any:
        return dataverse_target(fields_of(self.get_connection(self.dataverse_conn_id)), **kw)

    def test_connection(self) -> tuple[bool, str]:
        """Who the token belongs to, and whether the collection exists (the "Test" button)."""
        token = ""
        try:
            conn = self.get_connection(self.dataverse_conn_id)
            token = conn.password or ""
            target = dataverse_target(fields_of(conn), retries=0, timeout=15.0)
            me = target._rq("GET", "users/:me", "GET /api/users/:me")  # noqa: SLF001 - the client's own errors
            target._py("collection", lambda: target.api.get_dataverse(target.collection))  # noqa: SLF001
            return True, (f"Dataverse at {target.base_url}: token of {me.get('identifier')}, "
                          f"collection {target.collection}")
        except Exception as exc:  # noqa: BLE001 - shown to the user, who needs the reason
            message = f"{type(exc).__name__}: {exc}"
            return False, message.replace(token, "***") if token else message
