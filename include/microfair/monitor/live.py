"""A cheap fingerprint of the ledger: pages re-render when it changes (server-sent events)."""

from __future__ import annotations

from sqlalchemy import func, select

from microfair.ledger import AuditEntry, Ledger, Record, StageEvent, StageStatus


def change_token(ledger: Ledger) -> str:
    """Changes whenever an event starts or ends, a stage status, record or audit entry is written."""
    with ledger.session() as s:
        parts = s.execute(select(
            select(func.max(StageEvent.id)).scalar_subquery(),
            select(func.max(StageStatus.updated_at)).scalar_subquery(),
            select(func.max(Record.updated_at)).scalar_subquery(),
            select(func.max(AuditEntry.id)).scalar_subquery(),
        )).one()
    return "|".join("" if p is None else str(p) for p in parts)
