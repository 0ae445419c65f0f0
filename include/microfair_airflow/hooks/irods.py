"""IrodsHook: a python-irodsclient session from an Airflow connection.

Connection ``irods_default`` (``irods.connection_id``)::

    host, port (1247), login = iRODS user, password
    schema or extra "zone"                 the zone (e.g. ``tempZone``)
    extra "auth_scheme"                     native (default) | pam_password
    extra "client_server_policy"            CS_NEG_REQUIRE for TLS (CS_NEG_REFUSE | CS_NEG_DONT_CARE)
    extra "ca_certificate_file", "encryption_algorithm", "encryption_key_size",
          "encryption_num_hash_rounds", "encryption_salt_size", "ssl_verify_server"   TLS options

Example (environment)::

    AIRFLOW_CONN_IRODS_DEFAULT='{"conn_type": "irods", "host": "irods.facility.local", "port": 1247,
        "login": "microfair", "password": "…", "extra": {"zone": "facilityZone",
        "client_server_policy": "CS_NEG_REQUIRE", "ca_certificate_file": "/etc/ssl/certs/facility-ca.pem"}}'

The password is handed to the client only; it is never logged. ``MICROFAIR_IRODS_SESSION_FACTORY``
(``module:callable``, called with the connection) replaces the session constructor: sites use it for
an authentication scheme the connection fields do not cover, and the tests for the recording stand-in.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from airflow.sdk import BaseHook

TLS_KEYS = ("client_server_policy", "ca_certificate_file", "encryption_algorithm", "encryption_key_size",
            "encryption_num_hash_rounds", "encryption_salt_size", "ssl_verify_server")
FACTORY_VAR = "MICROFAIR_IRODS_SESSION_FACTORY"


def session_options(conn: Any) -> dict[str, Any]:
    """``iRODSSession`` keyword arguments from an Airflow connection (pure; the tests check it)."""
    extra = conn.extra_dejson or {}
    zone = extra.get("zone") or conn.schema
    if not conn.host or not conn.login or not zone:
        raise ValueError(f"iRODS connection {conn.conn_id!r} needs host, login and a zone "
                         "(schema or extra 'zone')")
    opts: dict[str, Any] = {"host": conn.host, "port": int(conn.port or 1247), "user": conn.login,
                            "zone": zone, "password": conn.password}
    scheme = extra.get("auth_scheme", "native")
    if scheme not in ("native", "pam_password", "pam"):
        raise ValueError(f"iRODS connection {conn.conn_id!r}: unknown auth_scheme {scheme!r}")
    if scheme != "native":
        opts["authentication_scheme"] = "pam_password"
    for key in TLS_KEYS:
        if key in extra:
            opts[key] = extra[key]
    return opts


class IrodsHook(BaseHook):
    conn_name_attr = "irods_conn_id"
    default_conn_name = "irods_default"
    conn_type = "irods"
    hook_name = "iRODS"

    def __init__(self, irods_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.irods_conn_id = irods_conn_id

    @classmethod
    def configured(cls, conn_id: str) -> bool:
        """Whether the connection exists (the DAG skips cleanly when it does not)."""
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            cls.get_connection(conn_id)
        except AirflowNotFoundException:
            return False
        return True

    def get_conn(self) -> Any:
        """An open ``iRODSSession``; close it with ``session.cleanup()`` (or use :meth:`session`)."""
        conn = self.get_connection(self.irods_conn_id)
        factory = os.environ.get(FACTORY_VAR)
        if factory:
            module, _, name = factory.partition(":")
            return getattr(importlib.import_module(module), name)(conn)
        from irods.session import iRODSSession

        opts = session_options(conn)
        self.log.info("iRODS: connecting to %s:%s zone %s as %s", opts["host"], opts["port"], opts["zone"],
                      opts["user"])
        return iRODSSession(**opts)
