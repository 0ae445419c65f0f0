"""3-2-1 backup targets and the retention robot (owned by the backup stage)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from microfair.config.core import Strict


class BackupTarget(Strict):
    """One restic repository holding a copy of the facility data."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    medium: Literal["disk", "tape", "object-store", "remote-server"]
    offsite: bool = False
    repository: str = Field(description="restic repository: a path, sftp:user@host:/path, s3:…")
    connection_id: str | None = Field(
        None, description="Airflow connection holding the repository password (and SSH key)"
    )
    password_file: str | None = Field(None, description="alternative to connection_id")


class BackupSettings(Strict):
    targets: list[BackupTarget] = Field(default_factory=list)
    check_read_data_subset: str = "10%"
    restore_sample_files: int = Field(3, ge=0)
    keep_daily: int = 7
    keep_weekly: int = 4
    keep_monthly: int = 12


class RetentionSettings(Strict):
    days: int = Field(60, ge=0)
    dry_run: bool = True
