"""Dataset ledger (SQLAlchemy 2 + Alembic)."""

from microfair.ledger.models import AuditEntry, Dataset, DatasetFile, Record, StageEvent, StageStatus
from microfair.ledger.store import STAGES, Ledger, LedgerBusy, RunContext, StageOutcome, as_dict

__all__ = ["STAGES", "AuditEntry", "Dataset", "DatasetFile", "Ledger", "LedgerBusy", "Record", "RunContext", "StageEvent",
           "StageOutcome", "StageStatus", "as_dict"]
