"""BiostudiesHook: a BioStudies submission client from an Airflow connection.

Connection (type ``biostudies``; ``http`` or ``generic`` work too), default id ``biostudies_default`` (``biostudies.connection_id``):

* ``host``: the submission API base URL, e.g. ``https://www.ebi.ac.uk/biostudies/submissions/api``
  (or a bare host name; then ``schema`` is the scheme and the path defaults to ``/biostudies/submissions/api``);
* ``login`` / ``password``: the BioStudies account (the password is never logged);
* extras (optional): ``ftp_host``, ``ftp_port``, ``ftp_user``, ``ftp_password`` for large files.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook

from microfair.deposit import BiostudiesClient, FtpAccess
from microfair_airflow.provider import ui_field_behaviour


def _base_url(conn: Any) -> str:
    host = (conn.host or "").rstrip("/")
    if "://" in host:
        return host
    scheme = conn.schema or "https"
    port = f":{conn.port}" if conn.port else ""
    return f"{scheme}://{host}{port}/biostudies/submissions/api"


class BiostudiesHook(BaseHook):
    """:param biostudies_conn_id: the Airflow connection of the BioStudies account."""

    conn_name_attr = "biostudies_conn_id"
    default_conn_name = "biostudies_default"
    conn_type = "biostudies"
    hook_name = "BioStudies submission API"

    def __init__(self, biostudies_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.biostudies_conn_id = biostudies_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form (Airflow 3.2+ reads the same declaration from the provider info)."""
        return ui_field_behaviour(cls.conn_type)

    def test_connection(self, timeout: float = 15.0) -> tuple[bool, str]:
        """Log in to BioStudies once, with no retry (the "Test" button); the password is never shown."""
        password = ""
        try:
            conn = self.get_connection(self.biostudies_conn_id)
            password = conn.password or ""
            client = BiostudiesClient(_base_url(conn), conn.login or "", password, retries=0, timeout=timeout)
            try:
                profile = client.login()
            finally:
                client.logout()
            who = profile.get("email") or profile.get("username") or conn.login
            return True, f"logged in to BioStudies at {client.base_url} as {who}"
        except Exception as exc:  # noqa: BLE001 - shown to the user, who needs the reason
            message = f"{type(exc).__name__}: {exc}"
            return False, message.replace(password, "***") if password else message

    def get_conn(self, cfg: Any = None) -> BiostudiesClient:
        if cfg is None:
            from microfair_airflow.common import facility

            cfg, _ = facility()
        conn = self.get_connection(self.biostudies_conn_id)
        extra = conn.extra_dejson or {}
        ftp = None
        if extra.get("ftp_host"):
            ftp = FtpAccess(str(extra["ftp_host"]), int(extra.get("ftp_port") or 21),
                            str(extra.get("ftp_user") or "anonymous"), str(extra.get("ftp_password") or ""))
        s = cfg.biostudies
        return BiostudiesClient(_base_url(conn), conn.login or "", conn.password or "", ftp=ftp,
                                ftp_threshold_bytes=int(s.ftp_threshold_mb * (1 << 20)), retries=s.retries,
                                backoff_seconds=s.backoff_seconds)
