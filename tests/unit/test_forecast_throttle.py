"""The alert scan runs after every task; the storage forecast behind ``storage_filling`` (about 1 s at
10,000 datasets) is recomputed at most once per ``alerts.forecast_every_minutes``, or sooner when the
ledger's dataset count or bytes changed by ``alerts.forecast_change_fraction``."""

from __future__ import annotations

from collections import namedtuple
from datetime import datetime, timedelta, timezone

import pytest

import microfair.monitor.forecast as forecast_mod
from microfair.config.monitor import AlertSettings
from microfair.monitor.alerts import run_alert_scan
from microfair.monitor.seed import seed_ledger

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=timezone.utc)
GIB = 1024 ** 3
Usage = namedtuple("Usage", "total used free")
SETTINGS = AlertSettings(webhook_connection_id="microfair_webhook")  # enabled; the connection is missing


def _no_connection(conn_id: str):
    raise KeyError(conn_id)


@pytest.fixture
def counted(facility_config, ledger, monkeypatch):
    """A small seeded ledger and a counter of storage forecast computations."""
    for p in (facility_config.storage.raw, facility_config.storage.converted, facility_config.storage.reports,
              facility_config.storage.quarantine):
        p.mkdir(parents=True, exist_ok=True)
    seed_ledger(ledger, ["LSM980"], n_datasets=20, failed_fraction=0, backlog_fraction=0, with_backup=False,
                now=NOW, days=20)
    calls: list[datetime] = []
    real = forecast_mod.storage_forecast

    def counting(cfg, ledger, **kw):
        calls.append(kw.get("now"))
        return real(cfg, ledger, **kw)

    monkeypatch.setattr(forecast_mod, "storage_forecast", counting)
    return facility_config, ledger, calls


def test_consecutive_scans_compute_the_forecast_once(counted) -> None:
    cfg, ledger, calls = counted
    for k in range(6):  # six tasks end within two minutes
        run_alert_scan(ledger, SETTINGS, _no_connection, cfg, now=NOW + timedelta(seconds=20 * k))
    assert len(calls) == 1
    marks = ledger.audit_entries("storage_forecast_run")
    assert len(marks) == 1 and marks[0].details["datasets"] == 20


def test_due_recomputation_happens_and_raises_the_alert(counted, monkeypatch) -> None:
    cfg, ledger, calls = counted
    monkeypatch.setattr(forecast_mod.shutil, "disk_usage", lambda p: Usage(1024 * GIB, 0, 1024 * GIB))
    assert run_alert_scan(ledger, SETTINGS, _no_connection, cfg, now=NOW)["alerts"] == 0
    # the disk fills up (not a ledger change): within the interval nothing is recomputed ...
    monkeypatch.setattr(forecast_mod.shutil, "disk_usage", lambda p: Usage(1024 * GIB, 1024 * GIB - 1, 1))
    assert run_alert_scan(ledger, SETTINGS, _no_connection, cfg, now=NOW + timedelta(minutes=14))["alerts"] == 0
    assert len(calls) == 1
    # ... once the interval is over it is, and the storage_filling alert goes out
    out = run_alert_scan(ledger, SETTINGS, _no_connection, cfg, now=NOW + timedelta(minutes=15, seconds=1))
    assert len(calls) == 2 and calls[-1] == NOW + timedelta(minutes=15, seconds=1)
    assert out["alerts"] >= 1  # the raw tier at least (the other tiers share its volume)
    assert len(ledger.audit_entries("storage_forecast_run")) == 2


def test_a_material_ledger_change_recomputes_before_the_interval(counted) -> None:
    cfg, ledger, calls = counted
    run_alert_scan(ledger, SETTINGS, _no_connection, cfg, now=NOW)
    seed_ledger(ledger, ["LSM980"], n_datasets=1, failed_fraction=0, backlog_fraction=0, with_backup=False,
                now=NOW, days=1, uid_prefix="NEW")  # 20 -> 21 datasets: 5 % > the default 1 %
    run_alert_scan(ledger, SETTINGS, _no_connection, cfg, now=NOW + timedelta(minutes=1))
    assert len(calls) == 2
    run_alert_scan(ledger, SETTINGS, _no_connection, cfg, now=NOW + timedelta(minutes=2))
    assert len(calls) == 2  # no further change


def test_interval_zero_recomputes_after_every_scan(counted) -> None:
    cfg, ledger, calls = counted
    every = AlertSettings(webhook_connection_id="microfair_webhook", forecast_every_minutes=0)
    for k in range(3):
        run_alert_scan(ledger, every, _no_connection, cfg, now=NOW + timedelta(seconds=k))
    assert len(calls) == 3
