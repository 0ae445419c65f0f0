"""Dashboard and alerting (owned by the monitoring stage).

Secrets never live here: the SMTP server and the webhook are Airflow connections,
named by ``smtp_connection_id`` and ``webhook_connection_id``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from microfair.config.core import Strict

AlertKind = Literal["acquisition_failed", "backup_321_lost", "storage_filling"]


class AlertSettings(Strict):
    """Who hears about a failed acquisition or a dataset that drops out of 3-2-1, and how."""

    smtp_connection_id: str | None = Field(
        None, description="Airflow connection of the SMTP server (host, port, login, password; "
                          "extra: from_email, starttls, ssl, timeout)")
    email_to: list[str] = Field(default_factory=list, description="recipients of the alert e-mails")
    email_from: str | None = Field(None, description="sender; default: the connection's from_email, then its login")
    webhook_connection_id: str | None = Field(
        None, description="Airflow connection of the webhook: host = full URL (http/https), password = bearer "
                          "token (optional); extra: headers (dict), timeout")
    events: list[AlertKind] = Field(default_factory=lambda: ["acquisition_failed", "backup_321_lost",
                                                              "storage_filling"],
                                    description="which events raise an alert")
    subject_prefix: str = "[microfair]"
    dashboard_url: str | None = Field(
        None, description="public URL of the dashboard (e.g. https://airflow.example.org/microfair/) for links")
    max_per_scan: int = Field(50, ge=1, description="alerts sent in one go; the rest are summarised in one message")
    forecast_every_minutes: float = Field(
        15.0, ge=0, description="storage_filling: recompute the storage forecast at most this often (0: after "
                                "every task)")
    forecast_change_fraction: float = Field(
        0.01, ge=0, description="storage_filling: recompute sooner when the ledger's dataset count or bytes "
                                "changed by this fraction")

    @model_validator(mode="after")
    def _recipients(self) -> "AlertSettings":
        if self.smtp_connection_id and not self.email_to:
            raise ValueError("smtp_connection_id is set but email_to is empty")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.smtp_connection_id or self.webhook_connection_id)


class DashboardSettings(Strict):
    page_size: int = Field(50, ge=5, le=500)
    refresh_seconds: int = Field(10, ge=2, description="how often open pages look for ledger changes")
    throughput_days: int = Field(30, ge=7, le=366, description="days shown in the throughput chart")
    airflow_api_url: str | None = Field(
        None, description="base URL the dashboard uses to reach Airflow's REST API (default: [api] base_url)")
    api_timeout_seconds: float = Field(10.0, gt=0)
