"""Ledger tables: datasets, their files, stage events, per-stage status, records and audit.

The ledger is the single source of truth about datasets; Airflow's metadata
database records runs, not datasets. Schema changes go through Alembic
(``microfair/ledger/migrations``).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}


class Dataset(Base):
    """One acquisition: a primary file from a landing zone, and everything derived from it."""

    __tablename__ = "datasets"
    #: One dataset per raw copy: two acquisitions can never both claim the same raw path (see collect).
    __table_args__ = (Index("ux_datasets_raw_path", "raw_path", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uid: Mapped[str] = mapped_column(String(64), unique=True)
    microscope: Mapped[str] = mapped_column(String(128), index=True)
    source_path: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(String(512))
    project: Mapped[str | None] = mapped_column(String(128), index=True)
    study: Mapped[str | None] = mapped_column(String(256))
    experiment: Mapped[str | None] = mapped_column(String(256))
    raw_path: Mapped[str | None] = mapped_column(Text)
    zarr_path: Mapped[str | None] = mapped_column(Text)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    source_mtime_ns: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    blake3: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(32), index=True, default="discovered")
    reason: Mapped[str | None] = mapped_column(Text)
    name_valid: Mapped[bool | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    collected_at: Mapped[datetime | None] = mapped_column(default=None, index=True)
    #: When collect's scan last saw this size and mtime (quiescence: unchanged across two looks).
    observed_at: Mapped[datetime | None] = mapped_column(default=None)
    #: 1 for the first acquisition at a landing path; a file changed after collection is version 2, …
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    #: The uid of the next version once this one is ``superseded`` (its raw copy is kept).
    superseded_by: Mapped[str | None] = mapped_column(String(64), default=None)

    files: Mapped[list["DatasetFile"]] = relationship(back_populates="dataset", cascade="all, delete-orphan")


class DatasetFile(Base):
    """A file that belongs to a dataset: raw copy, sidecar, Zarr, record, thumbnail…"""

    __tablename__ = "files"
    __table_args__ = (UniqueConstraint("dataset_id", "role", "path"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    blake3: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    dataset: Mapped[Dataset] = relationship(back_populates="files")


class StageEvent(Base):
    """One attempt of one stage on one dataset (or on no dataset: discovery, backup runs)."""

    __tablename__ = "stage_events"
    __table_args__ = (Index("ix_events_dataset_stage", "dataset_id", "stage"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    stage: Mapped[str] = mapped_column(String(32), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)  # running|succeeded|failed|flagged|skipped
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    checksum: Mapped[str | None] = mapped_column(String(128))
    started_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    dag_id: Mapped[str | None] = mapped_column(String(250))
    run_id: Mapped[str | None] = mapped_column(String(250))
    task_id: Mapped[str | None] = mapped_column(String(250))
    map_index: Mapped[int | None] = mapped_column(Integer)


class StageStatus(Base):
    """Latest state of each stage of each dataset (denormalised for fast dashboards)."""

    __tablename__ = "stage_status"

    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True)
    stage: Mapped[str] = mapped_column(String(32), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("stage_events.id", ondelete="SET NULL"))
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Record(Base):
    """A JSON record about a dataset: dublin_core, rembi, image_metadata, qc, backup_verdict, irods, bia…"""

    __tablename__ = "records"
    __table_args__ = (UniqueConstraint("dataset_id", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AuditEntry(Base):
    """Who did what by hand or by robot: re-runs from the dashboard, retention deletions…"""

    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
