"""Storage forecast and footprint over a seeded ledger with known growth: fill dates, warnings, alerts,
the overview's charts and ``microfair status --forecast``."""

from __future__ import annotations

import json
import re
from collections import namedtuple
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import insert, select, update

from microfair.ledger import Dataset, StageEvent
from microfair.monitor.footprint import footprint
from microfair.monitor.forecast import (
    cumulative,
    fill_date,
    forecast_alerts,
    render_forecast,
    slope_per_week,
    storage_forecast,
    week_ends,
)
from microfair.monitor.seed import seed_ledger

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=timezone.utc)
GIB = 1024 ** 3
Usage = namedtuple("Usage", "total used free")


def free_70_gib(path: str) -> Usage:
    return Usage(1024 * GIB, 954 * GIB, 70 * GIB)


@pytest.fixture
def seeded(facility_config, ledger):
    """84 datasets of 1 GiB, one a day for 12 weeks (7 GiB per week on the raw tier), two microscopes, four
    projects; backup target second-disk grows 7 GiB per week too, offsite has a declared capacity."""
    for p in (facility_config.storage.raw, facility_config.storage.converted, facility_config.storage.reports,
              facility_config.storage.quarantine):
        p.mkdir(parents=True, exist_ok=True)
    seed_ledger(ledger, ["LSM980", "SPIM"], n_datasets=84, failed_fraction=0, backlog_fraction=0,
                with_backup=False, now=NOW, days=84)
    with ledger.session() as s:
        ids = list(s.scalars(select(Dataset.id).order_by(Dataset.id)))
        for i, ds_id in enumerate(ids):
            s.execute(update(Dataset).where(Dataset.id == ds_id)
                      .values(collected_at=NOW - timedelta(days=i), size_bytes=GIB))
        s.execute(insert(StageEvent), [
            {"dataset_id": None, "stage": "backup", "state": "succeeded", "attempt": 1,
             "started_at": NOW - timedelta(days=7 * (12 - k), minutes=5),
             "ended_at": NOW - timedelta(days=7 * (12 - k)),
             "details": {"target": "second-disk", "repository_bytes": 7 * GIB * k}} for k in range(13)])
    facility_config.forecast.target_capacity_bytes = {"offsite": 100 * GIB}
    return facility_config, ledger


def test_least_squares_growth_and_fill_date_by_hand() -> None:
    ends = week_ends(NOW, 4)
    assert ends[0] == NOW - timedelta(days=28) and ends[-1] == NOW
    items = [(NOW - timedelta(days=30), 100), (NOW - timedelta(days=10), 50), (NOW, 50)]
    assert cumulative(items, ends) == [100, 100, 100, 150, 200]
    # slope through (0,100) (1,100) (2,100) (3,150) (4,200): sum (x-2)(y-130) / sum (x-2)^2 = 250 / 10
    assert slope_per_week([100, 100, 100, 150, 200]) == pytest.approx(25.0)
    assert slope_per_week([None, 5]) is None  # one point is no trend
    day, days = fill_date(700, 70.0, NOW)  # 10 bytes a day
    assert days == pytest.approx(70) and day == (NOW + timedelta(days=70)).date()
    assert fill_date(700, 0.0, NOW) == (None, None) and fill_date(None, 5.0, NOW) == (None, None)


def test_seeded_ledger_known_growth_gives_the_known_fill_date(seeded) -> None:
    cfg, ledger = seeded
    fc = storage_forecast(cfg, ledger, now=NOW, disk_usage=free_70_gib)
    tiers = {g.name: g for g in fc.tiers}
    raw = tiers["raw"]
    assert raw.total_bytes == 84 * GIB
    assert raw.per_week == pytest.approx(7 * GIB)
    assert [v for _, v in raw.history] == [7 * GIB * k for k in range(13)]
    # the four tiers share one volume: 70 GiB free at 7 GiB a week -> 70 days
    assert raw.days_left == pytest.approx(70) and raw.fills_on == (NOW + timedelta(days=70)).date()
    assert set(raw.shares_volume_with) == {"converted", "quarantine", "reports"}
    assert tiers["converted"].fills_on == raw.fills_on  # same volume, same date
    assert fc.warnings == []  # 70 days > warn_days 60
    backups = {g.name: g for g in fc.backups}
    assert backups["second-disk"].per_week == pytest.approx(7 * GIB)
    assert backups["second-disk"].fills_on == (NOW + timedelta(days=70)).date()  # local path: its volume
    assert backups["offsite"].volume_free == 100 * GIB and backups["offsite"].fills_on is None  # no runs yet
    per_scope = {g.name: g.per_week for g in fc.microscopes}
    assert set(per_scope) == {"LSM980", "SPIM"}
    assert sum(per_scope.values()) == pytest.approx(7 * GIB)  # least squares is linear: parts add up
    assert sum(g.per_week for g in fc.projects) == pytest.approx(7 * GIB)
    assert len(fc.projects) == 4


def test_warning_and_one_alert_n_days_before_a_tier_fills(seeded) -> None:
    cfg, ledger = seeded
    cfg.forecast.warn_days = 80
    fc = storage_forecast(cfg, ledger, now=NOW, disk_usage=free_70_gib)
    raw = next(g for g in fc.tiers if g.name == "raw")
    assert raw.warning and "fills in 70 days (around 2026-08-24)" in raw.warning and "7.0 GiB per week" in raw.warning
    first = forecast_alerts(cfg, ledger, now=NOW, disk_usage=free_70_gib)
    assert sorted(a.reason.split(" fills")[0] for a in first) == sorted(
        [f"the {t} tier ({getattr(cfg.storage, t)})" for t in ("raw", "converted", "quarantine", "reports")]
        + ["backup target second-disk"])
    assert all(a.kind == "storage_filling" for a in first)
    assert forecast_alerts(cfg, ledger, now=NOW, disk_usage=free_70_gib) == []  # once per crossing
    from microfair.monitor.alerts import render_text, subject_for

    assert "Storage filling up:" in render_text(first)
    assert "5 storage tiers filling up" in subject_for(cfg.alerts, first)


def test_footprint_per_project_and_year_against_hand_computation(seeded) -> None:
    cfg, ledger = seeded
    fp = footprint(cfg, ledger, now=NOW)
    assert {r.year for r in fp.rows} == {2026} and len(fp.rows) == 4
    copies = 1 + len(cfg.backup.targets)  # raw on the facility storage and on each of the 2 targets
    assert fp.rows[0].copies == {"raw": 3, "converted": 3}
    # dataset i kept i days so far this year: sum 0..83 = 3486 GiB-days per copy
    tb_years = 3486 * GIB * copies / 1e12 / 365.25
    assert sum(r.tb_years for r in fp.rows) == pytest.approx(tb_years, rel=1e-4)
    kwh = tb_years * cfg.forecast.kwh_per_tb_year * cfg.forecast.pue
    assert sum(r.kwh for r in fp.rows) == pytest.approx(kwh, rel=1e-3)
    assert sum(r.kgco2e for r in fp.rows) == pytest.approx(kwh * 0.052, rel=1e-3)
    assert sum(r.stored_bytes for r in fp.rows) == 84 * GIB * copies
    cfg.forecast.grid_kgco2e_per_kwh = 0.5  # configurable factor
    assert sum(r.kgco2e for r in footprint(cfg, ledger, now=NOW).rows) == pytest.approx(kwh * 0.5, rel=1e-3)


def test_overview_shows_the_forecast_and_footprint_charts(seeded, monkeypatch) -> None:
    import microfair.monitor.footprint as footprint_mod
    import microfair.monitor.forecast as forecast
    from tests.support.dashboard import dashboard_client

    cfg, ledger = seeded
    cfg.forecast.warn_days = 80
    real = forecast.storage_forecast
    monkeypatch.setattr(forecast, "storage_forecast",
                        lambda c, lg, **kw: real(c, lg, now=NOW, disk_usage=free_70_gib))
    real_fp = footprint_mod.footprint
    monkeypatch.setattr(footprint_mod, "footprint", lambda c, lg, **kw: real_fp(c, lg, now=NOW))
    with dashboard_client(cfg, ledger, monkeypatch) as client:
        html = client.get("/").text
    fc = re.search(r'<section data-testid="forecast">(.*?)</section>', html, re.S)
    assert fc, "no forecast section"
    chart = re.search(r'<svg[^>]*data-testid="forecast-chart".*?</svg>', fc.group(1), re.S)
    assert chart and 'data-series="raw"' in chart.group(0) and 'data-projection="raw"' in chart.group(0)
    assert 'data-full="raw"' in chart.group(0)  # the fill level falls inside the 12 weeks shown ahead
    assert "full 24 Aug 2026" in chart.group(0)
    assert fc.group(1).count('data-testid="forecast-warning"') == 5
    row = re.search(r'<tr data-series="tier:raw">(.*?)</tr>', fc.group(1), re.S).group(1)
    assert "84.0 GiB" in row and "7.0 GiB" in row and "2026-08-24" in row and "70 days" in row
    fp = re.search(r'<section data-testid="footprint">(.*?)</section>', html, re.S).group(1)
    bars = re.findall(r'<rect [^>]*data-year="2026" data-project="(\w+)"', fp)
    assert sorted(bars) == ["CELLDIV", "DEMO", "NEURO", "ORGANOID"]
    assert "kg CO₂e" in fp


def test_cli_status_forecast(seeded, capsys, monkeypatch) -> None:
    import microfair.monitor.footprint as footprint_mod
    import microfair.monitor.forecast as forecast
    from microfair.cli import main

    cfg, ledger = seeded
    free = {"bytes": 70 * GIB}
    monkeypatch.setattr(forecast.shutil, "disk_usage", lambda p: Usage(1024 * GIB, 1024 * GIB - free["bytes"],
                                                                       free["bytes"]))
    # the CLI's "now" is pinned to the seeded week (the real clock would make the growth depend on the date)
    real, real_fp = forecast.storage_forecast, footprint_mod.footprint
    monkeypatch.setattr(forecast, "storage_forecast", lambda c, lg, **kw: real(c, lg, **{**kw, "now": NOW}))
    monkeypatch.setattr(footprint_mod, "footprint", lambda c, lg, **kw: real_fp(c, lg, **{**kw, "now": NOW}))
    path = cfg.storage.raw.parent.parent / "microfair.yaml"
    monkeypatch.setenv("MICROFAIR_CONFIG", str(path))
    assert path.is_file()
    code = main(["status", "--forecast"])
    out = capsys.readouterr().out
    assert code == 0, out  # 70 GiB free at 7 GiB a week: 70 days, beyond warn_days 60
    free["bytes"] = 35 * GIB  # 35 days: within warn_days, so the exit code says so
    assert main(["status", "--forecast"]) == 1
    assert "fills around 2026-07-20 (35 days)" in capsys.readouterr().out
    free["bytes"] = 70 * GIB
    assert "Storage forecast (least squares over the last 12 weeks" in out
    assert re.search(r"raw\s+84\.0 GiB", out) and "Footprint (raw × 3 and converted × 3 copies" in out
    assert main(["status", "--forecast", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert {g["name"] for g in body["forecast"]["tiers"]} == {"raw", "converted", "quarantine", "reports"}
    assert body["footprint"]["factors"]["grid_kgco2e_per_kwh"] == 0.052


def test_render_forecast_lists_warnings(seeded) -> None:
    cfg, ledger = seeded
    cfg.forecast.warn_days = 80
    text = render_forecast(storage_forecast(cfg, ledger, now=NOW, disk_usage=free_70_gib),
                           footprint(cfg, ledger, now=NOW))
    assert "WARNING:" in text and "fills around 2026-08-24 (70 days)" in text
    assert re.search(r"LSM980\s+42\.0 GiB", text)
