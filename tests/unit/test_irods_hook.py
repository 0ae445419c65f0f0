"""IrodsHook: python-irodsclient session options from an Airflow connection (no server needed),
session factories selected by the connection extra ``session_factory``, and the Test button."""

from __future__ import annotations

import json
import logging

import pytest

pytest.importorskip("irods")
pytest.importorskip("airflow.sdk")

from airflow.sdk import Connection  # noqa: E402

from microfair.standins.irods import RecordingSession  # noqa: E402
from microfair_airflow.hooks import irods as irods_hook  # noqa: E402
from microfair_airflow.hooks.irods import SESSION_FACTORY_GROUP, IrodsHook, session_options  # noqa: E402
from microfair_airflow.provider import ui_field_behaviour  # noqa: E402

PASSWORD = "S3cret-iRODS-pw-for-the-hook"


def conn(extra: dict | None = None, **kw) -> Connection:
    fields = {"conn_id": "irods_default", "conn_type": "irods", "host": "irods.facility.local", "login": "mf",
              "password": PASSWORD, **kw}
    return Connection(**fields, extra=json.dumps(extra or {}))


def test_plain_connection_zone_from_schema_or_extra():
    opts = session_options(conn(schema="facZone"))
    assert opts == {"host": "irods.facility.local", "port": 1247, "user": "mf", "zone": "facZone",
                    "password": PASSWORD}
    assert session_options(conn({"zone": "other"}, schema="facZone", port=1248))["zone"] == "other"
    assert session_options(conn({"irods_zone_name": "pasted"}))["zone"] == "pasted"


def test_tls_extras_ask_for_negotiation_and_fill_the_encryption_settings():
    opts = session_options(conn({"zone": "z", "client_server_policy": "CS_NEG_REQUIRE",
                                 "irods_ssl_ca_certificate_file": "/etc/ssl/facility-ca.pem",
                                 "ssl_verify_server": "hostname", "encryption_key_size": "32"}))
    assert opts["client_server_negotiation"] == "request_server_negotiation"
    assert opts["ssl_ca_certificate_file"] == "/etc/ssl/facility-ca.pem" and opts["ssl_verify_server"] == "hostname"
    assert (opts["encryption_algorithm"], opts["encryption_key_size"], opts["encryption_num_hash_rounds"],
            opts["encryption_salt_size"]) == ("AES-256-CBC", 32, 16, 8)
    refuse = session_options(conn({"zone": "z", "client_server_policy": "CS_NEG_REFUSE"}))
    assert "client_server_negotiation" not in refuse


@pytest.mark.parametrize("extra, message", [
    ({}, "needs host, login and a zone"),
    ({"zone": "z", "auth_scheme": "kerberos"}, "unknown auth_scheme"),
    ({"zone": "z", "auth_scheme": "pam_password"}, "PAM .* needs TLS"),
    ({"zone": "z", "client_server_policy": "TLS_PLEASE"}, "client_server_policy"),
])
def test_bad_connections_are_refused_with_the_reason(extra, message):
    with pytest.raises(ValueError, match=message) as err:
        session_options(conn(extra))
    assert PASSWORD not in str(err.value)


def test_pam_over_tls():
    opts = session_options(conn({"zone": "z", "auth_scheme": "pam_password", "client_server_policy": "CS_NEG_REQUIRE"}))
    assert opts["authentication_scheme"] == "pam_password" and opts["password"] == PASSWORD


def test_a_connection_without_password_is_refused():
    with pytest.raises(ValueError, match="no password"):
        session_options(conn({"zone": "z"}, password=None))


def test_get_conn_builds_a_real_session_and_logs_no_password(monkeypatch, caplog, capsys, tmp_path):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("AIRFLOW_CONN_IRODS_UNIT", json.dumps({
        "conn_type": "irods", "host": "irods.facility.local", "port": 1247, "login": "mf", "password": PASSWORD,
        "extra": {"zone": "facZone", "client_server_policy": "CS_NEG_REQUIRE",
                  "ssl_ca_certificate_file": "/etc/ssl/facility-ca.pem", "connection_timeout": 30}}))
    assert IrodsHook.configured("irods_unit") and not IrodsHook.configured("irods_missing")
    with caplog.at_level(logging.DEBUG):
        hook = IrodsHook("irods_unit")
        hook.check()
        session = hook.get_conn()  # python-irodsclient connects on first use: nothing is sent here
    try:
        account = session.pool.account
        assert (account.host, account.port, account.client_user, account.client_zone) == \
            ("irods.facility.local", 1247, "mf", "facZone")
        assert account.client_server_negotiation == "request_server_negotiation"
        assert account.ssl_ca_certificate_file == "/etc/ssl/facility-ca.pem" and account.password == PASSWORD
        assert session.connection_timeout == 30
    finally:
        session.cleanup()
    logged = caplog.text + "".join(capsys.readouterr())  # the hook's logger goes through Airflow's structlog
    assert "connecting to irods.facility.local:1247 zone facZone as mf" in logged and PASSWORD not in logged


def test_test_connection_reports_an_unreachable_server(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("AIRFLOW_CONN_IRODS_UNIT", json.dumps({
        "conn_type": "irods", "host": "127.0.0.1", "port": 9, "login": "mf", "password": PASSWORD,
        "extra": {"zone": "z", "connection_timeout": 5}}))
    ok, message = IrodsHook("irods_unit").test_connection()
    assert not ok and "127.0.0.1" in message and PASSWORD not in message


class Registered:
    """What ``session_factories()`` returns for one name: an entry point's ``load()``."""

    def __init__(self, factory) -> None:
        self.factory = factory

    def load(self):
        return self.factory


@pytest.fixture
def factories(monkeypatch, tmp_path):
    """Test-only factories in place of the installed ones: the entry-point lookup is monkeypatched."""
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    made: list[tuple[RecordingSession, Connection]] = []

    def recording(conn):
        s = RecordingSession(zone=conn.schema or "tempZone", user=conn.login, groups=("microfair", "demo"))
        made.append((s, conn))
        return s

    def leaky(conn):
        raise ConnectionError(f"server refused {conn.login}:{conn.password}@{conn.host}")

    found = {"recording": Registered(recording), "leaky": Registered(leaky)}
    monkeypatch.setattr(irods_hook, "session_factories", lambda: found)
    return made


def set_conn(monkeypatch, conn_id: str = "irods_unit", **extra) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({
        "conn_type": "irods", "host": "irods.facility.local", "port": 1247, "login": "microfair",
        "password": PASSWORD, "schema": "facZone", "extra": extra}))


def test_the_extra_session_factory_selects_a_registered_factory(factories, monkeypatch):
    set_conn(monkeypatch, session_factory="recording")
    with IrodsHook("irods_unit").session() as s:
        assert isinstance(s, RecordingSession) and (s.zone, s.username) == ("facZone", "microfair")
    (made, conn), = factories
    assert made is s and conn.password == PASSWORD  # the factory gets the whole connection
    assert s.calls[-1] == ("session", "cleanup", "")


def test_an_unknown_factory_is_refused_naming_the_installed_ones(factories, monkeypatch):
    set_conn(monkeypatch, session_factory="recordnig")
    with pytest.raises(ValueError, match=r"no iRODS session factory 'recordnig'.*installed: leaky, recording"):
        IrodsHook("irods_unit").get_conn()
    assert not factories


def test_no_environment_variable_can_swap_the_session(factories, monkeypatch):
    """The old ``MICROFAIR_IRODS_SESSION_FACTORY`` import hook is gone: without the extra, a real session."""
    monkeypatch.setenv("MICROFAIR_IRODS_SESSION_FACTORY", "microfair.standins.irods_session:factory")
    set_conn(monkeypatch)
    session = IrodsHook("irods_unit").get_conn()
    try:
        assert type(session).__module__ == "irods.session" and not factories
    finally:
        session.cleanup()


def test_the_real_lookup_reads_the_entry_point_group(monkeypatch):
    calls = []

    def fake_entry_points(group):
        calls.append(group)
        return []

    monkeypatch.setattr(irods_hook, "entry_points", fake_entry_points)
    assert irods_hook.session_factories() == {}
    assert calls == [SESSION_FACTORY_GROUP] and SESSION_FACTORY_GROUP == "microfair.irods_sessions"


def test_test_connection_logs_in_and_finds_the_home_collection(factories, monkeypatch):
    set_conn(monkeypatch, session_factory="recording")
    ok, message = IrodsHook("irods_unit").test_connection()
    assert ok, message
    assert "zone facZone as microfair" in message and "/facZone/home/microfair exists" in message
    (s, _), = factories
    assert s.calls_of("collections", "exists") == ["/facZone/home/microfair"]
    assert s.calls[-1] == ("session", "cleanup", "") and PASSWORD not in message


def test_test_connection_fails_on_a_missing_home_collection(factories, monkeypatch):
    set_conn(monkeypatch, session_factory="recording", home_collection="/facZone/home/nobody")
    ok, message = IrodsHook("irods_unit").test_connection()
    assert not ok and "home collection /facZone/home/nobody does not exist" in message


def test_test_connection_never_shows_the_password(factories, monkeypatch):
    set_conn(monkeypatch, session_factory="leaky")
    ok, message = IrodsHook("irods_unit").test_connection()
    assert not ok and "ConnectionError: server refused microfair:***@irods.facility.local" in message
    assert PASSWORD not in message


def test_the_hook_offers_the_form_the_provider_declares():
    assert IrodsHook.get_ui_field_behaviour() == ui_field_behaviour("irods")
    assert IrodsHook.get_ui_field_behaviour()["relabeling"]["schema"] == "Zone"


def test_the_package_registers_the_standin_factory():
    """The real lookup, no monkeypatch: the installed distribution's entry point ``standin``."""
    from microfair.standins import irods_session

    assert irods_hook.session_factories()["standin"].value == "microfair.standins.irods_session:factory"
    assert irods_hook.session_factory("standin") is irods_session.factory


def test_the_standin_factory_through_the_hook_reads_the_zone_like_a_real_session(monkeypatch, tmp_path):
    """Extra ``session_factory: standin``: the zone is the schema (the form's "Zone"), as for a real session."""
    set_conn(monkeypatch, session_factory="standin", standin_state=str(tmp_path / "zone.pickle"))
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    ok, message = IrodsHook("irods_unit").test_connection()
    assert ok and message == "connected to iRODS in zone facZone as microfair; /facZone/home/microfair exists"
    assert (tmp_path / "zone.pickle").exists()  # the stand-in's zone, kept for the next session


def test_check_leaves_the_credentials_to_a_factory_but_not_its_name(factories, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_IRODS_FACTORY", json.dumps({
        "conn_type": "irods", "host": "irods.facility.local", "login": "microfair",
        "extra": {"session_factory": "recording"}}))  # no password, no zone: the factory's own log-in
    IrodsHook("irods_factory").check()
    monkeypatch.setenv("AIRFLOW_CONN_IRODS_FACTORY", json.dumps({
        "conn_type": "irods", "host": "irods.facility.local", "login": "microfair",
        "extra": {"session_factory": "kerberos"}}))
    with pytest.raises(ValueError, match="no iRODS session factory 'kerberos'"):
        IrodsHook("irods_factory").check()
    monkeypatch.setenv("AIRFLOW_CONN_IRODS_PLAIN", json.dumps({"conn_type": "irods", "host": "h", "login": "l",
                                                               "schema": "z"}))
    with pytest.raises(ValueError, match="has no password"):
        IrodsHook("irods_plain").check()
