"""IrodsHook: python-irodsclient session options from an Airflow connection (no server needed)."""

from __future__ import annotations

import json
import logging

import pytest

pytest.importorskip("irods")
pytest.importorskip("airflow.sdk")

from airflow.sdk import Connection  # noqa: E402

from microfair_airflow.hooks.irods import IrodsHook, session_options  # noqa: E402

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
    monkeypatch.delenv("MICROFAIR_IRODS_SESSION_FACTORY", raising=False)
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
    monkeypatch.delenv("MICROFAIR_IRODS_SESSION_FACTORY", raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_IRODS_UNIT", json.dumps({
        "conn_type": "irods", "host": "127.0.0.1", "port": 9, "login": "mf", "password": PASSWORD,
        "extra": {"zone": "z", "connection_timeout": 5}}))
    ok, message = IrodsHook("irods_unit").test_connection()
    assert not ok and "127.0.0.1" in message and PASSWORD not in message
