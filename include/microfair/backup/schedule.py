"""What one backup run reads back: which part of the repository ``restic check`` reads, which datasets are restored.

Within the verification window (``backup.full_verification_days``) every pack of a
repository is read and every dataset restored:

* ``restic check --read-data-subset n/N`` with ``N = backup.check_subsets`` and ``n``
  rotating from run to run (the position and when each part was last read are kept in
  each run's ledger event), so N runs read every pack once. When a part other than the
  one due was last read a whole window ago (runs were rarer than N per window), the run
  reads everything (``--read-data``) instead.
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
    """The ``restic check`` of one run: ``subset`` is ``100%``, ``n/N`` or a fixed setting.

    ``group_read_at[i]`` is when part ``i + 1`` of N was last read, this run included.
    """

    subset: str
    full: bool
    position: int  # n of n/N; 0 for a full read or a fixed subset
    subsets: int
    group_read_at: tuple[str | None, ...]
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {"read_data_subset": self.subset, "position": self.position, "subsets": self.subsets,
                "group_read_at": list(self.group_read_at), "full": self.full, "why": self.why}


def last_check(events: list[Any]) -> dict[str, Any] | None:
    """The check details of the latest finished run that ran one (events oldest first)."""
    for ev in reversed(events):
        check = (ev.details or {}).get("check")
        if isinstance(check, dict) and "ok" in check:
            return {**check, "at": _utc(ev.ended_at or ev.started_at).isoformat()}
    return None


def _group_reads(prev: dict[str, Any] | None, n: int) -> list[datetime | None]:
    if prev is None:
        return [None] * n
    if prev.get("full") or prev.get("read_data_subset") == "100%":
        return [_parse(prev.get("at"))] * n
    reads = prev.get("group_read_at")
    if isinstance(reads, list) and len(reads) == n:
        return [_parse(r) for r in reads]
    return [None] * n  # N changed, or an older record: nothing known


def plan_check(cfg: FacilityConfig, events: list[Any], now: datetime, full: bool | None) -> CheckPlan:
    """Choose this run's check from the previous runs' events of the same target (oldest first).

    The parts are read in turn. Everything is read instead when, besides the part due now,
    some part was last read a whole window ago (or never): runs were too rare for the rotation.
    """
    b = cfg.backup
    n = b.check_subsets
    window = timedelta(days=b.full_verification_days)
    prev = last_check(events)
    stamp = now.isoformat()
    everything = (stamp,) * n

    def full_plan(why: str) -> CheckPlan:
        return CheckPlan("100%", True, 0, n, everything, why)

    if full is True:
        return full_plan("full verification requested")
    if full is None and prev is None:
        return full_plan("first verification of this repository")
    if full is None and b.full_verification_days <= 0:
        return full_plan("the verification window is 0: everything, every run")
    if n == 1:
        return full_plan("one part: everything")
    reads = _group_reads(prev, n)
    if b.check_read_data_subset:
        oldest = min((r for r in reads if r is not None), default=None)
        if full is None and (oldest is None or now - oldest >= window):
            return full_plan("fixed subset: everything was last read a window ago")
        return CheckPlan(b.check_read_data_subset, False, 0, n, tuple(r.isoformat() if r else None for r in reads),
                         "fixed subset (configured)")
    nxt = int((prev or {}).get("position") or 0) % n  # 0-based index of the part due now
    late = [i + 1 for i, r in enumerate(reads) if i != nxt and (r is None or now - r >= window)]
    if full is None and late:
        return full_plan(f"part(s) {', '.join(map(str, late[:5]))} of {n} were last read a window ago or never")
    reads[nxt] = now
    return CheckPlan(f"{nxt + 1}/{n}", False, nxt + 1, n, tuple(r.isoformat() if r else None for r in reads),
                     "rotation")


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
