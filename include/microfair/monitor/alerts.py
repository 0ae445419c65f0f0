"""Alerts: a failed acquisition, or a dataset that drops out of 3-2-1, by e-mail and/or webhook.

:func:`scan_alerts` reads the ledger for events newer than the last scan (the mark
is an ``alert_scan`` audit entry, so a restart neither repeats nor loses alerts) and
:func:`send_alerts` hands them to every notifier. A notifier that fails is logged and
recorded in the audit entry; it never raises into the task that triggered the scan.

Connections are Airflow's, but this module does not import Airflow: the caller turns
them into notifiers with :func:`notifiers_from_connections`, passing any object with
``host``, ``port``, ``login``, ``password``, ``schema`` and ``extra_dejson``.
"""

from __future__ import annotations

import json
import logging
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from typing import Any, Protocol

import requests
from sqlalchemy import select

from microfair.config.monitor import AlertSettings
from microfair.ledger import AuditEntry, Dataset, Ledger, StageEvent
from microfair.monitor.overview import utc

log = logging.getLogger(__name__)

SCAN_ACTION = "alert_scan"
SENT_ACTION = "alert_sent"
ZONE_ACTION = "landing_zone_state"


@dataclass
class Alert:
    kind: str  # acquisition_failed | backup_321_lost | landing_zone_missing
    event_id: int
    uid: str | None
    name: str | None
    microscope: str | None
    project: str | None
    stage: str
    reason: str
    at: str
    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    map_index: int | None = None
    link: str | None = None

    def line(self) -> str:
        if self.kind == "landing_zone_missing":
            return f"- landing zone of {self.microscope}: {self.reason}"
        if self.kind == "storage_filling":
            return f"- {self.reason}"
        what = "failed" if self.kind == "acquisition_failed" else "dropped out of 3-2-1"
        idx = f"[{self.map_index}]" if self.map_index is not None and self.map_index >= 0 else ""
        where = f" ({self.dag_id}/{self.task_id}{idx}, run {self.run_id})" if self.task_id else ""
        return f"- {self.uid or '(run)'} {self.name or ''}: {self.stage} {what}{where}: {self.reason}"


class Notifier(Protocol):
    name: str

    def send(self, subject: str, alerts: list[Alert]) -> None: ...


@dataclass
class EmailNotifier:
    host: str
    port: int
    sender: str
    recipients: list[str]
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    use_ssl: bool = False
    timeout: float = 30.0
    name: str = "email"

    def send(self, subject: str, alerts: list[Alert]) -> None:
        msg = EmailMessage()
        msg["Subject"] = subject
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        msg.set_content(render_text(alerts))
        ctx = ssl.create_default_context()
        smtp_cls = smtplib.SMTP_SSL if self.use_ssl else smtplib.SMTP
        kw: dict[str, Any] = {"context": ctx} if self.use_ssl else {}
        with smtp_cls(self.host, self.port, timeout=self.timeout, **kw) as smtp:
            if self.starttls:
                smtp.starttls(context=ctx)
            if self.login and self.password:
                smtp.login(self.login, self.password)
            smtp.send_message(msg)


@dataclass
class WebhookNotifier:
    url: str
    token: str | None = field(default=None, repr=False)
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 15.0
    name: str = "webhook"

    def send(self, subject: str, alerts: list[Alert]) -> None:
        headers = {"Content-Type": "application/json", **self.headers}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        payload = {"source": "microfair", "subject": subject, "text": subject + "\n" + render_text(alerts),
                   "alerts": [asdict(a) for a in alerts]}
        r = requests.post(self.url, data=json.dumps(payload), headers=headers, timeout=self.timeout)
        if r.status_code >= 300:
            raise RuntimeError(f"webhook answered HTTP {r.status_code}")


def render_text(alerts: list[Alert]) -> str:
    failed = [a for a in alerts if a.kind == "acquisition_failed"]
    lost = [a for a in alerts if a.kind == "backup_321_lost"]
    zones = [a for a in alerts if a.kind == "landing_zone_missing"]
    parts = ["Storage filling up:\n" + "\n".join(a.line() for a in alerts if a.kind == "storage_filling")] if any(
        a.kind == "storage_filling" for a in alerts) else []
    if zones:
        parts.append(f"{len(zones)} landing zone(s) missing or not mounted:\n" + "\n".join(a.line() for a in zones))
    if failed:
        parts.append(f"{len(failed)} failed acquisition step(s):\n" + "\n".join(a.line() for a in failed))
    if lost:
        parts.append(f"{len(lost)} dataset(s) no longer 3-2-1 compliant:\n" + "\n".join(a.line() for a in lost))
    links = [f"  {a.uid}: {a.link}" for a in alerts if a.link]
    if links:
        parts.append("Details:\n" + "\n".join(links))
    return "\n\n".join(parts) + "\n"


def subject_for(settings: AlertSettings, alerts: list[Alert]) -> str:
    n_fail = sum(a.kind == "acquisition_failed" for a in alerts)
    n_lost = sum(a.kind == "backup_321_lost" for a in alerts)
    n_zone = sum(a.kind == "landing_zone_missing" for a in alerts)
    n_fill = sum(a.kind == "storage_filling" for a in alerts)
    bits = [f"{n_fill} storage tier{'s' if n_fill > 1 else ''} filling up"] if n_fill else []
    if n_zone:
        bits.append(f"{n_zone} landing zone{'s' if n_zone > 1 else ''} missing")
    if n_fail:
        bits.append(f"{n_fail} failed acquisition step{'s' if n_fail > 1 else ''}")
    if n_lost:
        bits.append(f"{n_lost} dataset{'s' if n_lost > 1 else ''} out of 3-2-1")
    return f"{settings.subject_prefix} " + ", ".join(bits)


def _last_mark(ledger: Ledger) -> int | None:
    with ledger.session() as s:
        details = s.scalar(select(AuditEntry.details).where(AuditEntry.action == SCAN_ACTION)
                           .order_by(AuditEntry.id.desc()).limit(1))
    return int(details["last_event_id"]) if details and "last_event_id" in details else None


def scan_alerts(ledger: Ledger, settings: AlertSettings, *, lookback: timedelta = timedelta(days=1),
                now: datetime | None = None, claim: bool = True) -> list[Alert]:
    """New alerts since the last scan (the first scan looks back ``lookback``); claims them if ``claim``."""
    now = now or datetime.now(timezone.utc)
    mark = _last_mark(ledger)
    cond = [StageEvent.id > mark] if mark is not None else [StageEvent.started_at >= now - lookback]
    with ledger.session() as s:
        top = s.scalar(select(StageEvent.id).order_by(StageEvent.id.desc()).limit(1)) or 0
        rows = list(s.execute(
            select(StageEvent, Dataset.uid, Dataset.name, Dataset.microscope, Dataset.project)
            .join(Dataset, Dataset.id == StageEvent.dataset_id)
            .where(*cond, StageEvent.id <= top, StageEvent.state.in_(("failed", "flagged")))
            .order_by(StageEvent.id)))
        alerts: list[Alert] = []
        for ev, uid, name, microscope, project in rows:
            common = dict(event_id=ev.id, uid=uid, name=name, microscope=microscope, project=project,
                          stage=ev.stage, at=(utc(ev.ended_at or ev.started_at) or now).isoformat(),
                          dag_id=ev.dag_id, run_id=ev.run_id, task_id=ev.task_id, map_index=ev.map_index)
            if ev.state == "failed" and "acquisition_failed" in settings.events:
                alerts.append(Alert(kind="acquisition_failed", reason=ev.error or "failed", **common))
            elif (ev.stage == "backup" and ev.state == "flagged" and "backup_321_lost" in settings.events
                  and (ev.details or {}).get("compliant") is False
                  and _was_compliant(s, ev.dataset_id, ev.id)):
                alerts.append(Alert(kind="backup_321_lost", reason=ev.error or "3-2-1 no longer holds", **common))
        if claim:
            s.add(AuditEntry(actor="microfair-alerts", action=SCAN_ACTION,
                             details={"last_event_id": max(top, mark or 0), "alerts": len(alerts)}))
    if settings.dashboard_url:
        base = settings.dashboard_url.rstrip("/")
        for a in alerts:
            if a.uid:
                a.link = f"{base}/datasets/{a.uid}"
    return alerts


def zone_alerts(cfg: Any, ledger: Ledger, *, now: datetime | None = None) -> list[Alert]:
    """An alert for each landing zone that has gone missing (not a folder, not mounted), once per outage.

    The state of each zone is remembered in ``landing_zone_state`` audit entries, so a zone that stays
    missing alerts once, not after every task, and alerts again after it came back and went again.
    """
    now = now or datetime.now(timezone.utc)
    with ledger.session() as s:
        marks = list(s.execute(select(AuditEntry.details).where(AuditEntry.action == ZONE_ACTION)
                               .order_by(AuditEntry.id.desc()).limit(500)).scalars())
    last: dict[str, bool] = {}
    for d in marks:
        if isinstance(d, dict) and d.get("microscope") not in last:
            last[d.get("microscope")] = bool(d.get("missing"))
    out: list[Alert] = []
    for z in cfg.landing_zones:
        try:
            missing = not z.path.is_dir()
        except OSError:
            missing = True
        if missing == last.get(z.microscope, False):
            continue
        ledger.audit("microfair-alerts", ZONE_ACTION, None, {"microscope": z.microscope, "path": str(z.path),
                                                             "missing": missing})
        if missing:
            log.error("landing zone %s of microscope %s is missing or not mounted", z.path, z.microscope)
            out.append(Alert(kind="landing_zone_missing", event_id=0, uid=None, name=None, microscope=z.microscope,
                             project=None, stage="discover", at=now.isoformat(),
                             reason=f"{z.path} does not exist or is not mounted: nothing can be collected from "
                                    f"{z.microscope}"))
        else:
            log.info("landing zone %s of microscope %s is back", z.path, z.microscope)
    return out


def _was_compliant(s: Any, dataset_id: int, before_event: int) -> bool:
    """True when the dataset's previous 3-2-1 verdict event said compliant."""
    prev = s.scalar(select(StageEvent.details).where(StageEvent.dataset_id == dataset_id,
                                                     StageEvent.stage == "backup", StageEvent.id < before_event,
                                                     StageEvent.state.in_(("succeeded", "flagged")))
                    .order_by(StageEvent.id.desc()).limit(1))
    return bool(prev and prev.get("compliant") is True)


def send_alerts(ledger: Ledger, settings: AlertSettings, alerts: list[Alert],
                notifiers: list[Notifier]) -> dict[str, str]:
    """Send ``alerts`` through every notifier; return {notifier: "ok" | reason}; audit the outcome."""
    if not alerts:
        return {}
    if not notifiers:
        log.error("%d alert(s) and no usable notifier: check the alerts block and its Airflow connections",
                  len(alerts))
        ledger.audit("microfair-alerts", SENT_ACTION, None, {"event_ids": [a.event_id for a in alerts],
                                                             "channels": {"none": "no usable notifier"}})
        return {"none": "no usable notifier"}
    shown = alerts[: settings.max_per_scan]
    subject = subject_for(settings, alerts)
    if len(alerts) > len(shown):
        subject += f" (first {len(shown)} listed)"
    outcome: dict[str, str] = {}
    for n in notifiers:
        try:
            n.send(subject, shown)
            outcome[n.name] = "ok"
            log.info("alert sent by %s: %s (datasets %s)", n.name, subject,
                     ", ".join(sorted({a.uid for a in alerts if a.uid})))
        except Exception as exc:  # an unreachable mail server must not fail the pipeline
            outcome[n.name] = f"{type(exc).__name__}: {exc}"
            log.error("alert NOT sent by %s (%s): %s", n.name, subject, outcome[n.name])
    ledger.audit("microfair-alerts", SENT_ACTION, None,
                 {"subject": subject, "event_ids": [a.event_id for a in alerts], "channels": outcome})
    return outcome


def notifiers_from_connections(settings: AlertSettings, get_connection: Callable[[str], Any]) -> list[Notifier]:
    """Build the configured notifiers from (Airflow) connections; a missing connection is logged and skipped."""
    out: list[Notifier] = []
    if settings.smtp_connection_id:
        try:
            c = get_connection(settings.smtp_connection_id)
            extra = _extra(c)
            use_ssl = _flag(extra.get("ssl"))
            sender = settings.email_from or extra.get("from_email") or c.login
            if not sender:
                raise ValueError("no sender: set alerts.email_from or the connection's extra from_email")
            out.append(EmailNotifier(host=c.host, port=int(c.port or (465 if use_ssl else 25)), sender=sender,
                                     recipients=list(settings.email_to), login=c.login or None,
                                     password=c.password or None, starttls=_flag(extra.get("starttls")),
                                     use_ssl=use_ssl, timeout=float(extra.get("timeout", 30))))
        except Exception as exc:
            log.error("alerts: SMTP connection %r unusable: %s", settings.smtp_connection_id, exc)
    if settings.webhook_connection_id:
        try:
            c = get_connection(settings.webhook_connection_id)
            extra = _extra(c)
            url = extra.get("url") or c.host
            if not url or "://" not in url:
                scheme = c.schema or "https"
                url = f"{scheme}://{c.host}" + (f":{c.port}" if c.port else "") + (extra.get("path") or "")
            out.append(WebhookNotifier(url=url, token=c.password or None, headers=dict(extra.get("headers") or {}),
                                       timeout=float(extra.get("timeout", 15))))
        except Exception as exc:
            log.error("alerts: webhook connection %r unusable: %s", settings.webhook_connection_id, exc)
    return out


def _extra(conn: Any) -> dict[str, Any]:
    extra = getattr(conn, "extra_dejson", None)
    return dict(extra) if isinstance(extra, dict) else {}


def _flag(v: Any) -> bool:
    return str(v).lower() in ("1", "true", "yes", "on")


def run_alert_scan(ledger: Ledger, settings: AlertSettings, get_connection: Callable[[str], Any],
                   cfg: Any = None, *, now: datetime | None = None) -> dict[str, Any]:
    """Scan, then send: what the Airflow listener calls after every microfair task.

    With the facility configuration ``cfg``, missing landing zones alert too (:func:`zone_alerts`), and
    tiers filling up (the storage forecast, recomputed at most every ``forecast_every_minutes``).
    """
    if not settings.enabled:
        return {"alerts": 0, "channels": {}}
    now = now or datetime.now(timezone.utc)
    alerts = scan_alerts(ledger, settings, now=now)
    if cfg is not None and "acquisition_failed" in settings.events:
        alerts = zone_alerts(cfg, ledger, now=now) + alerts
    if cfg is not None and "storage_filling" in settings.events:
        from microfair.monitor.forecast_throttle import throttled_forecast_alerts

        alerts = throttled_forecast_alerts(cfg, ledger, settings, now=now) + alerts
    channels = send_alerts(ledger, settings, alerts, notifiers_from_connections(settings, get_connection))
    return {"alerts": len(alerts), "channels": channels}
