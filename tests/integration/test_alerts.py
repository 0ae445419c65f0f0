"""Alerts against a real SMTP server (aiosmtpd, with login) and a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import sys
import threading
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from microfair.config import FacilityConfig, load_config
from microfair.config.monitor import AlertSettings
from microfair.ledger import Ledger, RunContext
from microfair.monitor.alerts import (
    EmailNotifier,
    WebhookNotifier,
    notifiers_from_connections,
    scan_alerts,
    send_alerts,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SMTP_USER, SMTP_PASSWORD = "alerts", "s3cret-smtp-pw"
WEBHOOK_TOKEN = "hook-token-123"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_server():
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    received: list = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            received.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                             "msg": message_from_bytes(envelope.content), "authenticated": session.authenticated, "auth": session.auth_data})
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == SMTP_USER.encode() and auth_data.password == SMTP_PASSWORD.encode()
        return AuthResult(success=ok, auth_data=auth_data)

    port = _free_port()
    ctl = Controller(Handler(), hostname="127.0.0.1", port=port, authenticator=authenticator,
                     auth_require_tls=False, auth_required=True)
    ctl.start()
    yield port, received
    ctl.stop()


@pytest.fixture
def webhook_receiver():
    posts: list = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            posts.append({"auth": self.headers.get("Authorization"), "body": json.loads(body),
                          "x": self.headers.get("X-Facility")})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/microfair", posts
    server.shutdown()


def _dataset(ledger: Ledger, uid: str) -> None:
    ledger.upsert_dataset(uid, microscope="demo-scope", source_path=f"/l/{uid}", name=f"{uid}.czi", project="DEMO",
                          state="collected")


def _fail_collect(ledger: Ledger, uid: str, map_index: int) -> None:
    with pytest.raises(OSError):
        with ledger.stage(uid, "collect", RunContext("microfair_ingest", "manual__x", "collect", map_index)):
            raise OSError("No space left on device")


def _verdict_event(ledger: Ledger, uid: str, compliant: bool) -> None:
    with ledger.stage(uid, "backup") as out:
        out.details = {"compliant": compliant, "copies": 3 if compliant else 2}
        if not compliant:
            out.state, out.error = "flagged", "target offsite: unavailable; 2 verified copies, 3 required"


def test_failed_acquisition_and_321_drop_reach_mail_and_webhook(ledger, smtp_server, webhook_receiver) -> None:
    port, mails = smtp_server
    url, posts = webhook_receiver
    settings = AlertSettings(email_to=["it@facility.example"], dashboard_url="http://airflow.example/microfair/")
    notifiers = [EmailNotifier("127.0.0.1", port, "microfair@facility.example", ["it@facility.example"],
                               login=SMTP_USER, password=SMTP_PASSWORD),
                 WebhookNotifier(url, token=WEBHOOK_TOKEN)]
    for uid in ("F1", "B1", "B2"):
        _dataset(ledger, uid)
    _fail_collect(ledger, "F1", map_index=4)
    _verdict_event(ledger, "B1", True)
    _verdict_event(ledger, "B1", False)  # drops out of 3-2-1
    _verdict_event(ledger, "B2", False)  # never compliant (not backed up yet): no alert

    alerts = scan_alerts(ledger, settings)
    assert [(a.kind, a.uid) for a in alerts] == [("acquisition_failed", "F1"), ("backup_321_lost", "B1")]
    assert alerts[0].map_index == 4 and alerts[0].link == "http://airflow.example/microfair/datasets/F1"
    outcome = send_alerts(ledger, settings, alerts, notifiers)
    assert outcome == {"email": "ok", "webhook": "ok"}

    (mail,) = mails
    assert mail["to"] == ["it@facility.example"] and mail["authenticated"] and mail["auth"].login == SMTP_USER.encode()
    subject = mail["msg"]["Subject"]
    assert subject == "[microfair] 1 failed acquisition step, 1 dataset out of 3-2-1"
    text = mail["msg"].get_payload()
    assert "F1" in text and "No space left on device" in text and "collect[4]" in text
    assert "B1" in text and "3 required" in text and "B2" not in text
    (post,) = posts
    assert post["auth"] == f"Bearer {WEBHOOK_TOKEN}"
    assert [(a["kind"], a["uid"]) for a in post["body"]["alerts"]] == [("acquisition_failed", "F1"),
                                                                         ("backup_321_lost", "B1")]
    assert SMTP_PASSWORD not in json.dumps(post["body"]) and WEBHOOK_TOKEN not in text

    # Nothing new: nothing is sent again; the next failure is.
    assert scan_alerts(ledger, settings) == []
    _fail_collect(ledger, "F1", map_index=4)
    assert [a.uid for a in scan_alerts(ledger, settings)] == ["F1"]
    assert len(ledger.audit_entries("alert_sent")) == 1 and len(ledger.audit_entries("alert_scan")) == 3


def test_unreachable_smtp_does_not_stop_the_webhook(ledger, webhook_receiver) -> None:
    url, posts = webhook_receiver
    settings = AlertSettings(email_to=["it@facility.example"])
    _dataset(ledger, "F2")
    _fail_collect(ledger, "F2", map_index=0)
    dead = EmailNotifier("127.0.0.1", _free_port(), "m@x", ["it@facility.example"], timeout=3)
    outcome = send_alerts(ledger, settings, scan_alerts(ledger, settings), [dead, WebhookNotifier(url)])
    assert outcome["webhook"] == "ok" and "ConnectionRefused" in outcome["email"]
    assert len(posts) == 1
    assert ledger.audit_entries("alert_sent")[-1].details["channels"]["email"].startswith("ConnectionRefused")


def test_notifiers_from_connection_objects(webhook_receiver) -> None:
    url, _ = webhook_receiver

    class Conn:
        def __init__(self, **kw):
            self.host, self.port, self.login, self.password, self.schema = (kw.get(k) for k in
                                                                            ("host", "port", "login", "password",
                                                                             "schema"))
            self.extra_dejson = kw.get("extra", {})

    conns = {"smtp": Conn(host="mail.example", port=587, login="u", password="pw-SECRET",
                          extra={"from_email": "microfair@example.org", "starttls": "true"}),
             "hook": Conn(host=url, password="t", extra={"headers": {"X-Facility": "imaging"}})}
    settings = AlertSettings(smtp_connection_id="smtp", email_to=["a@b.org"], webhook_connection_id="hook")
    email, hook = notifiers_from_connections(settings, conns.__getitem__)
    assert (email.host, email.port, email.sender, email.starttls, email.use_ssl) == ("mail.example", 587,
                                                                                   "microfair@example.org", True, False)
    assert (hook.url, hook.token, hook.headers) == (url, "t", {"X-Facility": "imaging"})
    assert "pw-SECRET" not in repr(email) and "'t'" not in repr(hook)  # secrets stay out of logs
    # A missing connection is skipped (logged), not fatal.
    assert notifiers_from_connections(settings, lambda c: (_ for _ in ()).throw(KeyError(c))) == []
    with pytest.raises(ValueError, match="email_to is empty"):
        AlertSettings(smtp_connection_id="smtp")


def test_airflow_listener_uses_airflow_connections(facility_config: FacilityConfig, tmp_path, monkeypatch,
                                                   smtp_server, webhook_receiver) -> None:
    """The plugin's scan: facility file from MICROFAIR_CONFIG, credentials from Airflow connections (env)."""
    port, mails = smtp_server
    url, posts = webhook_receiver
    cfg_path = tmp_path / "facility" / "microfair.yaml"
    data = yaml.safe_load(cfg_path.read_text())
    data["alerts"] = {"smtp_connection_id": "microfair_smtp", "email_to": ["it@facility.example"],
                      "webhook_connection_id": "microfair_webhook"}
    cfg_path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("MICROFAIR_CONFIG", str(cfg_path))
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    monkeypatch.setenv("AIRFLOW_CONN_MICROFAIR_SMTP", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": port, "login": SMTP_USER, "password": SMTP_PASSWORD,
        "extra": {"from_email": "microfair@facility.example"}}))
    monkeypatch.setenv("AIRFLOW_CONN_MICROFAIR_WEBHOOK", json.dumps({
        "conn_type": "http", "host": url, "password": WEBHOOK_TOKEN}))
    monkeypatch.syspath_prepend(str(REPO / "plugins"))
    ledger = Ledger(load_config(cfg_path).ledger.url)
    _dataset(ledger, "L1")
    _fail_collect(ledger, "L1", map_index=2)

    from microfair_dashboard.alerting import alert_listener

    class TI:
        dag_id, task_id = "microfair_ingest", "collect"

    alert_listener.on_task_instance_failed(None, TI(), OSError("x"))
    assert len(mails) == 1 and mails[0]["msg"]["From"] == "microfair@facility.example"
    assert len(posts) == 1 and posts[0]["auth"] == f"Bearer {WEBHOOK_TOKEN}"
    alert_listener.on_task_instance_success(None, TI())  # nothing new: nothing sent
    TI.dag_id = "someone_elses_dag"
    _fail_collect(ledger, "L1", map_index=2)
    alert_listener.on_task_instance_failed(None, TI(), None)  # not a microfair DAG: no scan
    assert len(mails) == 1 and len(posts) == 1
    sys.modules.pop("microfair_dashboard.alerting", None)
