"""What one backup run reads back: which part of the repository ``restic check`` reads, which datasets are restored.

Within the verification window (``backup.full_verification_days``) every pack of a
repository is read and every dataset restored:

* ``restic check --read-data-subset n/N`` with ``N = backup.check_subsets`` and ``n``
  rotating from run to run (the position is kept in each run's ledger event), so N runs
  read every pack once. When a cycle has not completed within the window (runs were
  rarer than N per window), the run reads everything (``--read-data``) instead.
* Each run restores the datasets whose last read-back on that target is oldest,
  ``max(restore_sample_files, ceil(datasets / N))`` of them, and every dataset whose
  last read-back is older than the window, however many that is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from microfair.config import FacilityConfig


def _utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _parse(ts: Any) -> datetime | None:
    try:
        return _utc(datetime.fromisoformat(str(ts))) if ts else None
    except ValueError:
        return None


@dataclass(frozen=True)
class CheckPlan:
    """The ``restic check`` of one run: ``subset`` is ``100%``, ``n/N`` or a fixed setting."""

    subset: str
    full: bool
    position: int  # n of n/N; 0 for a full read or a fixed subset
    subsets: int
    cycle_started_at: str
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {"read_data_subset": self.subset, "position": self.position, "subsets": self.subsets,
                "cycle_started_at": self.cycle_started_at, "full": self.full, "why": self.why}


def last_check(events: list[Any]) -> dict[str, Any] | None:
    """The check details of the latest finished run that ran one (events oldest first)."""
    for ev in reversed(events):
        check = (ev.details or {}).get("check")
        if isinstance(check, dict) and "ok" in check:
            return {**check, "at": _utc(ev.ended_at or ev.started_at).isoformat()}
    return None


def plan_check(cfg: FacilityConfig, events: list[Any], now: datetime, full: bool | None) -> CheckPlan:
    """Choose this run's check from the previous runs' events of the same target (oldest first)."""
    b = cfg.backup
    n = b.check_subsets
    window = timedelta(days=b.full_verification_days)
    prev = last_check(events)
    stamp = now.isoformat()
    if full is True:
        return CheckPlan("100%", True, 0, n, stamp, "full verification requested")
    if full is None and (prev is None or b.full_verification_days <= 0):
        return CheckPlan("100%", True, 0, n, stamp, "first verification" if prev is None else "window is 0")
    if prev is None:  # full=False on a target never verified: start a rotation now
        prev = {"position": n, "cycle_started_at": stamp, "at": stamp}
    if prev.get("full"):  # everything was read then: a new cycle starts there
        position, started = 0, _parse(prev.get("at")) or now
    else:
        position, started = int(prev.get("position") or 0), _parse(prev.get("cycle_started_at")) or now
        if not b.check_read_data_subset and (position >= n or position <= 0):  # cycle complete: a new one
            position, started = 0, now
    if full is None and now - started >= window:
        return CheckPlan("100%", True, 0, n, stamp,
                         f"the cycle started {started:%Y-%m-%d %H:%M} UTC did not read everything within the window")
    if b.check_read_data_subset:
        return CheckPlan(b.check_read_data_subset, False, 0, n, started.isoformat(), "fixed subset (configured)")
    if n == 1:
        return CheckPlan("100%", True, 0, 1, stamp, "one subset: everything")
    return CheckPlan(f"{position + 1}/{n}", False, position + 1, n, started.isoformat(), "rotation")


def read_back_quota(cfg: FacilityConfig, n_datasets: int) -> int:
    """How many already-verified datasets one run restores again (besides the overdue ones)."""
    return max(cfg.backup.restore_sample_files, math.ceil(n_datasets / max(cfg.backup.check_subsets, 1)))


def choose_read_backs(cfg: FacilityConfig, last_read: dict[str, str | None], now: datetime) -> list[str]:
    """Datasets (uid → last read-back time on this target) to restore in this run: overdue first, then oldest."""
    window = timedelta(days=cfg.backup.full_verification_days)
    epoch = datetime.min.replace(tzinfo=timezone.utc)
    ordered = sorted(last_read, key=lambda u: (_parse(last_read[u]) or epoch, u))
    overdue = [u for u in ordered if (at := _parse(last_read[u])) is None or now - at >= window]
    rest = [u for u in ordered if u not in set(overdue)]
    return overdue + rest[: max(read_back_quota(cfg, len(last_read)) - len(overdue), 0)]
