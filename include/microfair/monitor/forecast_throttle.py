"""When the alert scan recomputes the storage forecast behind the ``storage_filling`` alert.

The scan runs after every microfair task, and the forecast reads the whole ledger (about 1 s at 10,000
datasets). It is recomputed at most once per ``alerts.forecast_every_minutes``, or sooner when the number
of datasets or their bytes changed by ``alerts.forecast_change_fraction`` since the last computation.

Each computation leaves a ``storage_forecast_run`` audit entry (time, dataset count, bytes, alerts); that is
the "last result" the next scan compares against. Skipping loses no alert: ``storage_filling`` alerts are
sent when a tier's warning starts, and that state lives in ``storage_forecast_state`` audit entries, so a
warning that starts between two computations is sent by the next one.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import func, select

from microfair.config.monitor import AlertSettings
from microfair.ledger import AuditEntry, Dataset, Ledger
from microfair.monitor.overview import utc

log = logging.getLogger(__name__)

RUN_ACTION = "storage_forecast_run"


def ledger_size(ledger: Ledger) -> tuple[int, int]:
    """(number of datasets, their bytes): two aggregates, milliseconds at 10,000 datasets."""
    with ledger.session() as s:
        n, total = s.execute(select(func.count(Dataset.id), func.coalesce(func.sum(Dataset.size_bytes), 0))).one()
    return int(n or 0), int(total or 0)


def last_run(ledger: Ledger) -> dict[str, Any] | None:
    with ledger.session() as s:
        details = s.scalar(select(AuditEntry.details).where(AuditEntry.action == RUN_ACTION)
                           .order_by(AuditEntry.id.desc()).limit(1))
    return details if isinstance(details, dict) else None


def _changed(before: int, after: int, fraction: float) -> bool:
    return abs(after - before) > fraction * before if before else after != before


def due(settings: AlertSettings, last: dict[str, Any] | None, size: tuple[int, int], now: datetime) -> str | None:
    """Why the forecast must be recomputed now (``None``: the last computation still holds)."""
    if last is None:
        return "first computation"
    try:
        at = utc(datetime.fromisoformat(str(last["at"])))
        n, total = int(last["datasets"]), int(last["bytes"])
    except (KeyError, TypeError, ValueError):
        return "last computation unreadable"
    interval = timedelta(minutes=settings.forecast_every_minutes)
    if at is None or now - at >= interval or now < at:  # a clock that went back: recompute rather than wait
        return f"more than {settings.forecast_every_minutes:g} min since the last computation"
    frac = settings.forecast_change_fraction
    if _changed(n, size[0], frac) or _changed(total, size[1], frac):
        return f"ledger changed from {n} datasets / {total} B to {size[0]} / {size[1]} B"
    return None


def throttled_forecast_alerts(cfg: Any, ledger: Ledger, settings: AlertSettings, *,
                              now: datetime | None = None) -> list[Any]:
    """:func:`microfair.monitor.forecast.forecast_alerts` when it is due (see the module), else ``[]``."""
    from microfair.monitor import forecast  # imports microfair.monitor.alerts, which imports this module

    now = utc(now) or datetime.now(timezone.utc)
    size = ledger_size(ledger)
    why = due(settings, last_run(ledger), size, now)
    if why is None:
        return []
    log.debug("storage forecast recomputed: %s", why)
    alerts = forecast.forecast_alerts(cfg, ledger, now=now)
    ledger.audit("microfair-alerts", RUN_ACTION, None, {"at": now.isoformat(), "datasets": size[0],
                                                        "bytes": size[1], "alerts": len(alerts), "why": why})
    return alerts
