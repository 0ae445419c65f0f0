"""Dashboard and alerting (owned by the monitoring stage)."""

from __future__ import annotations

from pydantic import Field

from microfair.config.core import Strict


class AlertSettings(Strict):
    smtp_connection_id: str | None = None
    email_to: list[str] = Field(default_factory=list)
    webhook_connection_id: str | None = None


class DashboardSettings(Strict):
    page_size: int = Field(50, ge=5, le=500)
    refresh_seconds: int = Field(10, ge=2)
