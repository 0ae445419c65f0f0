"""Footprint of what the facility stores, per project and calendar year, from the ledger.

Stored bytes × copies (raw + converted, on the facility storage and on every backup target), TB-years,
energy (kWh) and CO₂e with the configurable factors of ``forecast`` (defaults and their sources:
docs/forecast.md). Reads the same ledger rows as :mod:`microfair.monitor.forecast` (``read_items``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from microfair.ledger import Ledger
from microfair.monitor.forecast import read_items, settings_of
from microfair.monitor.overview import utc

TB = 1e12  # the factors are per decimal terabyte, as drive makers count
YEAR = timedelta(days=365.25)


@dataclass
class FootprintRow:
    project: str
    year: int
    stored_bytes: int  # all copies, at the end of the year (or now)
    copies: dict[str, int]  # raw / converted: how many copies of each
    tb_years: float
    kwh: float
    kgco2e: float


@dataclass
class Footprint:
    rows: list[FootprintRow]
    factors: dict[str, float]
    note: str

    def years(self) -> list[tuple[int, float, float]]:
        """(year, kWh, kg CO₂e) summed over projects."""
        by: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for r in self.rows:
            by[r.year][0] += r.kwh
            by[r.year][1] += r.kgco2e
        return [(y, v[0], v[1]) for y, v in sorted(by.items())]

    def to_dict(self) -> dict[str, Any]:
        return {"rows": [asdict(r) for r in self.rows], "factors": self.factors, "note": self.note,
                "years": [{"year": y, "kwh": k, "kgco2e": c} for y, k, c in self.years()]}


def footprint(cfg: Any, ledger: Ledger, *, now: datetime | None = None,
              items: dict[str, list[Any]] | None = None) -> Footprint:
    """Per project and calendar year: bytes × copies kept, TB-years, kWh and kg CO₂e (current year: so far)."""
    s = settings_of(cfg)
    now = utc(now) or datetime.now(timezone.utc)
    read = items if items is not None else read_items(ledger)
    n_targets = len(cfg.backup.targets)
    copies = {"raw": 1 + n_targets,
              "converted": 1 + (n_targets if getattr(cfg.backup, "include_converted", True) else 0)}
    kept = [(t, b * copies["raw"], p) for t, b, _, p in read["raw"]]
    kept += [(t, b * copies["converted"], p) for t, b, _, p in read["converted"]]
    items = [(t, b, p or "(none)") for t, b, p in kept if t is not None and t <= now]
    rows = []
    if items:
        first = min(t for t, _, _ in items).year
        for year in range(first, now.year + 1):
            start = datetime(year, 1, 1, tzinfo=timezone.utc)
            end = min(now, datetime(year + 1, 1, 1, tzinfo=timezone.utc))
            by: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
            for t, b, p in items:
                if t < end or t == now:
                    by[p][0] += b
                    by[p][1] += b / TB * max(0.0, (end - max(t, start)) / YEAR)
            for project, (stored, tb_years) in sorted(by.items()):
                kwh = tb_years * s.kwh_per_tb_year * s.pue
                rows.append(FootprintRow(project, year, int(stored), dict(copies), tb_years, kwh,
                                         kwh * s.grid_kgco2e_per_kwh))
    note = (f"raw × {copies['raw']} and converted × {copies['converted']} copies (facility storage + "
            f"{n_targets} backup target(s)); {s.kwh_per_tb_year:g} kWh per TB-year × PUE {s.pue:g}, "
            f"{s.grid_kgco2e_per_kwh:g} kg CO₂e per kWh; {now.year} so far")
    factors = {"kwh_per_tb_year": s.kwh_per_tb_year, "pue": s.pue, "grid_kgco2e_per_kwh": s.grid_kgco2e_per_kwh}
    return Footprint(rows, factors, note)


__all__ = ["Footprint", "FootprintRow", "footprint"]
