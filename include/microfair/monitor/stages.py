"""Which life-cycle stages exist at this facility, and how each stage's state is shown.

A stage that is not configured (no backup target in the facility file, no iRODS or
BioStudies connection) and has never left a trace in the ledger is shown as
"not configured": the dashboard never invents a "pending" for a stage that cannot run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select

from microfair.config import FacilityConfig
from microfair.ledger import STAGES, Ledger, StageEvent

#: Column titles of the datasets table, in life-cycle order.
STAGE_TITLES = {
    "collect": "Collected",
    "validate": "Validated",
    "convert": "Converted",
    "qc": "QC",
    "backup": "Backup 3-2-1",
    "irods": "iRODS",
    "deposit": "BIA",
}
NOT_CONFIGURED = "not configured"
PENDING = "pending"
QUARANTINED = "quarantined"
#: Core stages run wherever microfair runs; the others need configuration.
CORE_STAGES = ("collect", "validate", "convert", "qc")


@dataclass(frozen=True)
class StageAvailability:
    stage: str
    title: str
    configured: bool
    why: str  # one line for the tooltip: what is configured, or what is missing


def stage_availability(cfg: FacilityConfig, ledger: Ledger,
                       has_connection: Callable[[str], bool] | None = None) -> dict[str, StageAvailability]:
    """Configured stages, from the facility file, the Airflow connections and the ledger.

    ``has_connection(conn_id)`` says whether an Airflow connection exists; without it
    (outside Airflow) only the facility file and the ledger decide.
    """
    with ledger.session() as s:
        seen = {st for st in ("backup", "irods", "deposit")
                if s.scalar(select(StageEvent.id).where(StageEvent.stage == st).limit(1)) is not None}
    out: dict[str, StageAvailability] = {}
    for stage in STAGES:
        title = STAGE_TITLES.get(stage, stage)
        if stage in CORE_STAGES:
            out[stage] = StageAvailability(stage, title, True, "core stage")
            continue
        if stage == "backup":
            n = len(cfg.backup.targets)
            ok = n > 0 or "backup" in seen
            why = (f"{n} backup target(s) configured" if n else
                   "events in the ledger" if ok else "no backup target in the facility configuration")
        else:
            conn_id = cfg.irods.connection_id if stage == "irods" else cfg.biostudies.connection_id
            has = bool(has_connection and _safe(has_connection, conn_id))
            ok = has or stage in seen
            why = (f"Airflow connection {conn_id!r}" if has else
                   "events in the ledger" if ok else f"no Airflow connection {conn_id!r}")
        out[stage] = StageAvailability(stage, title, ok, why)
    return out


def _safe(fn: Callable[[str], bool], arg: str) -> bool:
    try:
        return bool(fn(arg))
    except Exception:  # a broken secrets backend must not break the dashboard
        return False
