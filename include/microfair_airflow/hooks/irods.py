"""IrodsHook: a python-irodsclient session from an Airflow connection.

Connection ``irods_default`` (``irods.connection_id``)::

    host, port (1247), login = iRODS user, password
    schema or extra "zone"                 the zone (e.g. ``tempZone``)
    extra "auth_scheme"                     native (default) | pam_password (needs TLS)
    extra "client_server_policy"            CS_NEG_REQUIRE turns TLS on (CS_NEG_REFUSE: plain TCP)
    extra "ssl_ca_certificate_file"         CA bundle that signed the server's certificate
          "ssl_ca_certificate_path", "ssl_verify_server" (hostname | cert | none),
          "encryption_algorithm" (AES-256-CBC), "encryption_key_size" (32),
          "encryption_num_hash_rounds" (16), "encryption_salt_size" (8)
    extra "connection_timeout"              seconds (python-irodsclient's default otherwise)

The keys are those of ``irods_environment.json`` without their ``irods_`` prefix; the prefixed
spelling is accepted too, so a site can paste its environment file's entries into the extras.

Example (environment)::

    AIRFLOW_CONN_IRODS_DEFAULT='{"conn_type": "irods", "host": "irods.facility.local", "port": 1247,
        "login": "microfair", "password": "…", "extra": {"zone": "facilityZone",
        "client_server_policy": "CS_NEG_REQUIRE", "ssl_ca_certificate_file": "/etc/ssl/certs/facility-ca.pem"}}'

The password is handed to the client only; it is never logged nor shown by the Test button.

Session factories (the plugin point): the connection extra ``"session_factory": "<name>"`` makes the hook
build its session with the entry point ``<name>`` of the group ``microfair.irods_sessions`` (a callable
taking the Airflow connection and returning a session-like object), instead of python-irodsclient's
``iRODSSession``. A site registers one for an authentication set-up the fields above do not cover; the
package registers ``standin``, the in-memory zone of the demo and the tests. Without the extra, the
session is always a real ``iRODSSession``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from airflow.sdk import BaseHook

from microfair_airflow.provider import ui_field_behaviour

#: TLS settings (python-irodsclient account attributes) and their defaults when TLS is on.
TLS_DEFAULTS: dict[str, Any] = {"encryption_algorithm": "AES-256-CBC", "encryption_key_size": 32,
                                "encryption_num_hash_rounds": 16, "encryption_salt_size": 8}
TLS_KEYS = ("client_server_policy", "ssl_ca_certificate_file", "ssl_ca_certificate_path", "ssl_verify_server",
            *TLS_DEFAULTS)
POLICIES = ("CS_NEG_REQUIRE", "CS_NEG_DONT_CARE", "CS_NEG_REFUSE")
#: Entry-point group of the session factories; the connection extra ``session_factory`` names one.
SESSION_FACTORY_GROUP = "microfair.irods_sessions"


def session_factories() -> dict[str, EntryPoint]:
    """The installed session factories (entry points of ``microfair.irods_sessions``), by name."""
    return {ep.name: ep for ep in entry_points(group=SESSION_FACTORY_GROUP)}


def session_factory(name: str) -> Callable[[Any], Any]:
    """The factory registered as ``name``; ValueError naming the installed ones when there is none."""
    found = session_factories()
    if name not in found:
        installed = ", ".join(sorted(found)) or "none"
        raise ValueError(f"no iRODS session factory {name!r} is installed (entry-point group "
                         f"{SESSION_FACTORY_GROUP}; installed: {installed}); remove the connection extra "
                         "'session_factory' to use python-irodsclient")
    return found[name].load()


def _extra(extra: dict[str, Any], key: str) -> Any:
    return extra.get(key, extra.get("irods_" + key))


def session_options(conn: Any) -> dict[str, Any]:
    """``iRODSSession`` keyword arguments from an Airflow connection (pure; the tests check it)."""
    extra = conn.extra_dejson or {}
    zone = _extra(extra, "zone") or _extra(extra, "zone_name") or conn.schema
    if not conn.host or not conn.login or not zone:
        raise ValueError(f"iRODS connection {conn.conn_id!r} needs host, login and a zone "
                         "(schema or extra 'zone')")
    opts: dict[str, Any] = {"host": conn.host, "port": int(conn.port or 1247), "user": conn.login,
                            "zone": zone, "password": conn.password}
    tls = {key: _extra(extra, key) for key in TLS_KEYS if _extra(extra, key) is not None}
    if "ca_certificate_file" in extra:  # the spelling of earlier microfair versions
        tls.setdefault("ssl_ca_certificate_file", extra["ca_certificate_file"])
    policy = tls.get("client_server_policy")
    if policy is not None and policy not in POLICIES:
        raise ValueError(f"iRODS connection {conn.conn_id!r}: client_server_policy {policy!r} is not one of "
                         f"{', '.join(POLICIES)}")
    if policy in ("CS_NEG_REQUIRE", "CS_NEG_DONT_CARE"):
        # python-irodsclient only negotiates TLS when asked to, and needs every encryption setting then.
        opts["client_server_negotiation"] = "request_server_negotiation"
        opts.update(TLS_DEFAULTS)
        for key in TLS_DEFAULTS:
            if key in tls:
                tls[key] = tls[key] if key == "encryption_algorithm" else int(tls[key])
    opts.update(tls)
    scheme = str(_extra(extra, "auth_scheme") or _extra(extra, "authentication_scheme") or "native").lower()
    if scheme not in ("native", "pam_password", "pam"):
        raise ValueError(f"iRODS connection {conn.conn_id!r}: unknown auth_scheme {scheme!r} "
                         "(native or pam_password)")
    if scheme != "native":
        if policy != "CS_NEG_REQUIRE":
            raise ValueError(f"iRODS connection {conn.conn_id!r}: PAM sends the password to the server, so it "
                             "needs TLS: set extra client_server_policy to CS_NEG_REQUIRE")
        opts["authentication_scheme"] = "pam_password"
    if not conn.password:
        raise ValueError(f"iRODS connection {conn.conn_id!r} has no password")
    if extra.get("connection_timeout") is not None:
        opts["connection_timeout"] = float(extra["connection_timeout"])
    return opts


class IrodsHook(BaseHook):
    """An iRODS session from an Airflow connection (see the module docstring for its fields).

    :param irods_conn_id: the Airflow connection of the iRODS account.
    """

    conn_name_attr = "irods_conn_id"
    default_conn_name = "irods_default"
    conn_type = "irods"
    hook_name = "iRODS"

    def __init__(self, irods_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.irods_conn_id = irods_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form (Airflow 3.2+ reads the same declaration from the provider info)."""
        return ui_field_behaviour(cls.conn_type)

    @classmethod
    def configured(cls, conn_id: str) -> bool:
        """Whether the connection exists (the DAG skips cleanly when it does not)."""
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            cls.get_connection(conn_id)
        except AirflowNotFoundException:
            return False
        return True

    def check(self) -> None:
        """Raise ValueError when the connection lacks what a session needs (host, login, zone, password…).

        With a session factory, what the session needs is the factory's business: only its name is checked.
        """
        conn = self.get_connection(self.irods_conn_id)
        name = (conn.extra_dejson or {}).get("session_factory")
        if name:
            session_factory(str(name))
        else:
            session_options(conn)

    @contextmanager
    def session(self) -> Iterator[Any]:
        """``with hook.session() as s:`` a session, cleaned up (connections closed) afterwards."""
        s = self.get_conn()
        try:
            yield s
        finally:
            s.cleanup()

    def test_connection(self) -> tuple[bool, str]:
        """Log in and check that the home collection exists (the "Test" button of the Connections page).

        The home collection is the extra ``home_collection``, else ``/<zone>/home/<user>``. The message
        never carries the password, even when the client's error would.
        """
        password = ""
        try:
            conn = self.get_connection(self.irods_conn_id)
            password = conn.password or ""
            home = (conn.extra_dejson or {}).get("home_collection")
            with self.session() as s:
                home = home or f"/{s.zone}/home/{s.username}"
                if not s.collections.exists(home):
                    return False, (f"logged in to zone {s.zone} as {s.username}, but the home collection {home} "
                                   "does not exist (set the extra 'home_collection')")
                version = getattr(s, "server_version", None)
                server = "iRODS " + ".".join(str(v) for v in version) if version else "iRODS"
                return True, f"connected to {server} in zone {s.zone} as {s.username}; {home} exists"
        except Exception as exc:  # noqa: BLE001 - shown to the user, who needs the reason
            message = f"{type(exc).__name__}: {exc}"
            return False, message.replace(password, "***") if password else message

    def get_conn(self) -> Any:
        """An ``iRODSSession`` (it connects on first use); close it with ``cleanup()``, or use :meth:`session`.

        With the connection extra ``session_factory``, the session comes from that installed factory.
        """
        conn = self.get_connection(self.irods_conn_id)
        name = (conn.extra_dejson or {}).get("session_factory")
        if name:
            self.log.info("iRODS: session from the factory %r (connection %s)", name, self.irods_conn_id)
            return session_factory(str(name))(conn)
        from irods.session import iRODSSession

        opts = session_options(conn)
        self.log.info("iRODS: connecting to %s:%s zone %s as %s", opts["host"], opts["port"], opts["zone"],
                      opts["user"])
        return iRODSSession(**opts)
