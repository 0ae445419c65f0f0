"""Storage forecast and footprint, from the ledger.

* **Growth per week** per storage tier, backup target, microscope and project: the slope of a least-squares
  line through the cumulative bytes at the end of each of the last ``forecast.weeks`` weeks (one burst or
  one quiet week moves it far less than a "last week" figure would).
* **Fill date** of each tier: the free space of its volume (``shutil.disk_usage``, as the overview's
  storage panel) divided by the growth of every tier that shares the volume. A warning (dashboard) and an
  alert (``storage_filling``) come ``forecast.warn_days`` before that date.
* **Footprint** per project and year: :mod:`microfair.monitor.footprint` (same ledger rows, read once).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select

from microfair.config.forecast import ForecastSettings
from microfair.ledger import AuditEntry, Dataset, DatasetFile, Ledger, StageEvent
from microfair.monitor.overview import utc
from microfair.units import format_bytes

if TYPE_CHECKING:
    from microfair.monitor.footprint import Footprint

log = logging.getLogger(__name__)

TIER_ROLES = {"converted": ("zarr", "converted"), "quarantine": ("quarantine",),
              "reports": ("record", "report", "thumbnail", "qc")}
STATE_ACTION = "storage_forecast_state"
DiskUsage = Callable[[str], Any]


def settings_of(cfg: Any) -> ForecastSettings:
    return getattr(cfg, "forecast", None) or ForecastSettings()


# --------------------------------------------------------------------------- the arithmetic


def week_ends(now: datetime, weeks: int) -> list[datetime]:
    """The ``weeks + 1`` instants now − weeks·7 d, …, now − 7 d, now."""
    return [now - timedelta(days=7 * (weeks - k)) for k in range(weeks + 1)]


def cumulative(items: Iterable[tuple[datetime, int]], ends: list[datetime]) -> list[int]:
    """Bytes added at or before each instant of ``ends`` (everything before the window included)."""
    times = sorted((t, b) for t, b in items if t is not None)
    out, total, i = [], 0, 0
    for end in ends:
        while i < len(times) and times[i][0] <= end:
            total += int(times[i][1] or 0)
            i += 1
        out.append(total)
    return out


def slope_per_week(values: list[float | None]) -> float | None:
    """Least-squares slope (bytes per week) through the known values, one per week; None below 2 points."""
    pts = [(k, v) for k, v in enumerate(values) if v is not None]
    if len(pts) < 2:
        return None
    x = np.array([p[0] for p in pts], dtype=float)
    y = np.array([p[1] for p in pts], dtype=float)
    return float(np.polyfit(x, y, 1)[0])


def fill_date(free_bytes: int | None, per_week: float | None, now: datetime) -> tuple[date | None, float | None]:
    """(date, days left) at which ``free_bytes`` are used up at ``per_week``; (None, None) if not filling."""
    if free_bytes is None or per_week is None or per_week <= 0:
        return None, None
    days = free_bytes / (per_week / 7)
    return (now + timedelta(days=days)).date(), days


# --------------------------------------------------------------------------- the forecast


@dataclass
class Growth:
    kind: str  # tier | backup | microscope | project
    name: str
    total_bytes: int | None
    per_week: float | None
    history: list[tuple[date, int | None]]
    path: str | None = None
    volume_total: int | None = None
    volume_free: int | None = None
    shares_volume_with: list[str] = field(default_factory=list)
    fills_on: date | None = None
    days_left: float | None = None
    warning: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["history"] = [[day.isoformat(), v] for day, v in self.history]
        d["fills_on"] = self.fills_on.isoformat() if self.fills_on else None
        return d


@dataclass
class Forecast:
    now: datetime
    weeks: int
    warn_days: int
    tiers: list[Growth]
    backups: list[Growth]
    microscopes: list[Growth]
    projects: list[Growth]

    @property
    def warnings(self) -> list[str]:
        return [g.warning for g in self.tiers + self.backups if g.warning]

    def to_dict(self) -> dict[str, Any]:
        return {"now": self.now.isoformat(), "weeks": self.weeks, "warn_days": self.warn_days,
                "warnings": self.warnings,
                **{k: [g.to_dict() for g in getattr(self, k)] for k in ("tiers", "backups", "microscopes",
                                                                        "projects")}}


def _raw_items(ledger: Ledger) -> list[tuple[datetime, int, str | None, str | None]]:
    with ledger.session() as s:
        rows = s.execute(select(Dataset.collected_at, Dataset.size_bytes, Dataset.microscope, Dataset.project)
                         .where(Dataset.raw_path.is_not(None), Dataset.collected_at.is_not(None))).all()
    return [(utc(t), int(b or 0), m, p) for t, b, m, p in rows]


def _file_items(ledger: Ledger, roles: tuple[str, ...]) -> list[tuple[datetime, int, str | None, str | None]]:
    with ledger.session() as s:
        rows = s.execute(select(DatasetFile.created_at, DatasetFile.size_bytes, Dataset.microscope, Dataset.project)
                         .join(Dataset, Dataset.id == DatasetFile.dataset_id)
                         .where(DatasetFile.role.in_(roles))).all()
    return [(utc(t), int(b or 0), m, p) for t, b, m, p in rows]


def read_items(ledger: Ledger) -> dict[str, list[tuple[datetime, int, str | None, str | None]]]:
    """(time, bytes, microscope, project) of everything stored, per tier: one read for forecast and footprint."""
    return {"raw": _raw_items(ledger), **{tier: _file_items(ledger, roles) for tier, roles in TIER_ROLES.items()}}


def _backup_points(ledger: Ledger) -> dict[str, list[tuple[datetime, int]]]:
    """Repository size after each backup run, per target (run events carry ``repository_bytes``)."""
    with ledger.session() as s:
        rows = s.execute(select(StageEvent.ended_at, StageEvent.details)
                         .where(StageEvent.stage == "backup", StageEvent.dataset_id.is_(None),
                                StageEvent.state != "running")
                         .order_by(StageEvent.id)).all()
    out: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    for ended, details in rows:
        d = details or {}
        if ended is not None and d.get("target") and isinstance(d.get("repository_bytes"), (int, float)):
            out[str(d["target"])].append((utc(ended), int(d["repository_bytes"])))
    return out


def _latest_at(points: list[tuple[datetime, int]], ends: list[datetime]) -> list[int | None]:
    out: list[int | None] = []
    for end in ends:
        known = [v for t, v in points if t <= end]
        out.append(known[-1] if known else None)
    return out


def _volume(path: str | Path, disk_usage: DiskUsage) -> tuple[int | None, int | None, int | None]:
    """(device, total, free) of the volume holding ``path`` (its nearest existing parent)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        du = disk_usage(str(p))
        return os.stat(p).st_dev, int(du.total), int(du.free)
    except OSError:
        return None, None, None


def _growth(kind: str, name: str, items: list[tuple[datetime, int]], ends: list[datetime]) -> Growth:
    cum = cumulative(items, ends)
    return Growth(kind, name, cum[-1], slope_per_week(cum), [(e.date(), v) for e, v in zip(ends, cum)])


def _per(items: list[tuple[datetime, int, str | None, str | None]], index: int, kind: str,
         ends: list[datetime]) -> list[Growth]:
    groups: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    for item in items:
        groups[item[index] or "(none)"].append((item[0], item[1]))
    return [_growth(kind, key, rows, ends) for key, rows in sorted(groups.items())]


def _warn(g: Growth, s: ForecastSettings, what: str) -> None:
    if g.days_left is None or g.days_left > s.warn_days:
        return
    shared = f"; the volume is shared with {', '.join(g.shares_volume_with)}" if g.shares_volume_with else ""
    g.warning = (f"{what} fills in {g.days_left:.0f} days (around {g.fills_on}) at the growth of the last "
                 f"{s.weeks} weeks, {format_bytes(g.per_week)} per week; {format_bytes(g.volume_free)} free"
                 f"{shared}. Add storage or move data before then.")


def storage_forecast(cfg: Any, ledger: Ledger, *, now: datetime | None = None,
                     disk_usage: DiskUsage | None = None, items: dict[str, list[Any]] | None = None) -> Forecast:
    """Growth per week and fill dates per tier and backup target; growth per microscope and project.

    ``items``: what :func:`read_items` returned, when the caller already read it; ``disk_usage``: default
    ``shutil.disk_usage``, looked up at each call.
    """
    disk_usage = disk_usage or shutil.disk_usage
    s = settings_of(cfg)
    now = utc(now) or datetime.now(timezone.utc)
    ends = week_ends(now, s.weeks)
    items = items if items is not None else read_items(ledger)
    raw = items["raw"]
    files = {tier: items[tier] for tier in TIER_ROLES}
    tiers = [_growth("tier", "raw", [(t, b) for t, b, _, _ in raw], ends)]
    tiers += [_growth("tier", tier, [(t, b) for t, b, _, _ in rows], ends) for tier, rows in files.items()]
    devices: dict[str, int | None] = {}
    for g in tiers:
        g.path = str(getattr(cfg.storage, g.name))
        devices[g.name], g.volume_total, g.volume_free = _volume(g.path, disk_usage)
    for g in tiers:
        dev = devices[g.name]
        if dev is None:
            continue
        mates = [h for h in tiers if devices[h.name] == dev]
        g.shares_volume_with = [h.name for h in mates if h is not g]
        combined = sum(max(0.0, h.per_week or 0.0) for h in mates)
        g.fills_on, g.days_left = fill_date(g.volume_free, combined or None, now)
        _warn(g, s, f"the {g.name} tier ({g.path})")
    points = _backup_points(ledger)
    backups = []
    for t in cfg.backup.targets:
        pts = points.get(t.name, [])
        values = _latest_at(pts, ends)
        g = Growth("backup", t.name, pts[-1][1] if pts else None, slope_per_week(values),
                   [(e.date(), v) for e, v in zip(ends, values)], path=t.repository)
        if t.name in s.target_capacity_bytes:
            g.volume_total = s.target_capacity_bytes[t.name]
            g.volume_free = max(0, g.volume_total - (g.total_bytes or 0))
        elif "://" not in t.repository and ":" not in t.repository.split("/")[0]:
            _, g.volume_total, g.volume_free = _volume(t.repository.removeprefix("local:"), disk_usage)
        g.fills_on, g.days_left = fill_date(g.volume_free, g.per_week, now)
        _warn(g, s, f"backup target {t.name}")
        backups.append(g)
    stored = raw + files["converted"]
    return Forecast(now, s.weeks, s.warn_days, tiers, backups, _per(stored, 2, "microscope", ends),
                    _per(stored, 3, "project", ends))


# --------------------------------------------------------------------------- alerts and text


def forecast_alerts(cfg: Any, ledger: Ledger, *, now: datetime | None = None,
                    disk_usage: DiskUsage | None = None) -> list[Any]:
    """One ``storage_filling`` alert per tier or target when its warning starts (remembered in the audit log)."""
    from microfair.monitor.alerts import Alert

    try:
        fc = storage_forecast(cfg, ledger, now=now, disk_usage=disk_usage)
    except Exception:  # noqa: BLE001 - the alert scan runs after every task and must not fail it
        log.exception("storage forecast failed; no storage_filling alert this time")
        return []
    with ledger.session() as s:
        marks = list(s.execute(select(AuditEntry.details).where(AuditEntry.action == STATE_ACTION)
                               .order_by(AuditEntry.id.desc()).limit(500)).scalars())
    last: dict[str, bool] = {}
    for d in marks:
        if isinstance(d, dict) and d.get("key") not in last:
            last[d.get("key")] = bool(d.get("warning"))
    out = []
    for g in fc.tiers + fc.backups:
        key, warning = f"{g.kind}:{g.name}", g.warning is not None
        if warning == last.get(key, False):
            continue
        fills_on = g.fills_on.isoformat() if g.fills_on else None
        ledger.audit("microfair-alerts", STATE_ACTION, None, {"key": key, "warning": warning, "fills_on": fills_on})
        if warning:
            log.warning("storage forecast: %s", g.warning)
            out.append(Alert(kind="storage_filling", event_id=0, uid=None, name=None, microscope=None, project=None,
                             stage="storage", at=fc.now.isoformat(), reason=str(g.warning)))
    return out


def _rate(g: Growth) -> str:
    return "–" if g.per_week is None else f"{format_bytes(g.per_week)}/week"


def render_forecast(fc: Forecast, fp: Footprint) -> str:
    """The text of ``microfair status --forecast``."""
    lines = [f"Storage forecast (least squares over the last {fc.weeks} weeks; warning {fc.warn_days} days ahead)"]
    for g in fc.tiers + fc.backups:
        fills = f"fills around {g.fills_on} ({g.days_left:.0f} days)" if g.fills_on else "not filling"
        if g.volume_free is None:
            fills = "capacity unknown"
        label = g.name if g.kind == "tier" else f"backup {g.name}"
        lines.append(f"  {label:<18} {format_bytes(g.total_bytes):>10}  {_rate(g):>16}  "
                     f"{format_bytes(g.volume_free):>10} free  {fills}")
    for title, rows in (("per microscope", fc.microscopes), ("per project", fc.projects)):
        if rows:
            lines.append(f"Growth {title} (raw + converted):")
            lines += [f"  {g.name:<18} {format_bytes(g.total_bytes):>10}  {_rate(g):>16}" for g in rows]
    if fc.warnings:
        lines.append("WARNING:")
        lines += [f"  {w}" for w in fc.warnings]
    lines.append(f"Footprint ({fp.note}):")
    for r in fp.rows:
        lines.append(f"  {r.year} {r.project:<14} {format_bytes(r.stored_bytes):>10} stored  "
                     f"{r.tb_years:8.3g} TB-years  {r.kwh:9.3g} kWh  {r.kgco2e:8.3g} kg CO2e")
    if not fp.rows:
        lines.append("  nothing stored yet")
    return "\n".join(lines)


def print_forecast(cfg: Any, ledger: Ledger, *, as_json: bool = False, now: datetime | None = None) -> int:
    """``microfair status --forecast``: print the forecast and footprint; exit 1 when a tier warns."""
    import json

    from microfair.monitor.footprint import footprint

    items = read_items(ledger)
    fc, fp = storage_forecast(cfg, ledger, now=now, items=items), footprint(cfg, ledger, now=now, items=items)
    if as_json:
        print(json.dumps({"forecast": fc.to_dict(), "footprint": fp.to_dict()}, indent=2, default=str))
    else:
        print(render_forecast(fc, fp))
    return 1 if fc.warnings else 0


__all__ = ["Forecast", "Growth", "cumulative", "fill_date", "forecast_alerts", "print_forecast", "read_items",
           "render_forecast", "slope_per_week", "storage_forecast", "week_ends"]
