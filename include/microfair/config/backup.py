"""3-2-1 backup targets and the retention robot (owned by the backup stage).

A *copy* of a dataset is the primary store (raw tree on the facility server) or a
restic repository (a *target*) whose latest snapshot holds the raw file with
content verified against the ledger checksums. 3-2-1 = at least three verified
copies, on at least two different media, at least one of them off-site.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from microfair.config.core import Strict

Medium = Literal["disk", "tape", "object-store", "remote-server"]


class SftpSettings(Strict):
    """How to reach an ``sftp:user@host:/path`` repository with key authentication.

    The key path may also come from the Airflow connection's extras (``key_file``,
    ``known_hosts``, ``port``); values here are the defaults.
    """

    port: int = Field(22, ge=1, le=65535)
    identity_file: str | None = Field(None, description="private key (no passphrase) used by ssh")
    known_hosts_file: str | None = Field(
        None, description="known_hosts holding the server key; host keys are always checked strictly"
    )
    connect_timeout: int = Field(15, ge=1, description="seconds before ssh gives up connecting")


class BackupTarget(Strict):
    """One restic repository holding a copy of the facility data."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$", max_length=25)
    medium: Medium
    offsite: bool = False
    repository: str = Field(description="restic repository: a path, sftp:user@host:/path, s3:…")
    connection_id: str | None = Field(
        None, description="Airflow connection holding the repository password (and SSH key / S3 keys)"
    )
    password_file: str | None = Field(None, description="alternative to connection_id")
    sftp: SftpSettings | None = Field(None, description="ssh options for sftp: repositories")

    @model_validator(mode="after")
    def _has_secret_source(self) -> "BackupTarget":
        if not self.connection_id and not self.password_file:
            raise ValueError(f"backup target {self.name!r}: set connection_id or password_file")
        if self.repository.startswith("sftp:") and self.sftp is None:
            self.sftp = SftpSettings()
        return self


class BackupSettings(Strict):
    targets: list[BackupTarget] = Field(default_factory=list)
    primary_medium: Medium = Field("disk", description="medium of copy 1, the facility storage")
    required_copies: int = Field(3, ge=1)
    required_media: int = Field(2, ge=1)
    required_offsite: int = Field(1, ge=0)
    schedule: str | None = Field("0 2 * * *", description="daily cron of microfair_backup (also runs on INGESTED)")
    check_subsets: int = Field(
        7, ge=1, le=256,
        description="restic check reads one part in N (--read-data-subset n/N, n rotating): N runs read it all",
    )
    check_read_data_subset: str | None = Field(
        None, pattern=r"^(\d+(\.\d+)?%|\d+/\d+|\d+[kKmMgGtT]?)$",
        description="a fixed subset instead of the rotation (not recommended: it may never read some packs)",
    )
    restore_sample_files: int = Field(
        3, ge=0, description="at least this many datasets, oldest read-back first, are restored again each run"
    )
    full_verification_days: float = Field(
        7, ge=0,
        description="verification window: every pack read and every dataset restored at least this often "
                    "(0 = everything at every run)",
    )
    primary_verify_days: float = Field(7, ge=0, description="re-hash primary raw files this often")
    max_copy_age_hours: float = Field(
        48, gt=0, description="a target whose last good run is older no longer counts as a copy"
    )
    include_converted: bool = True
    include_reports: bool = True
    keep_daily: int = Field(7, ge=0)
    keep_weekly: int = Field(4, ge=0)
    keep_monthly: int = Field(12, ge=0)
    prune: bool = True
    restic_binary: str = "restic"
    restic_host: str = Field("microfair", description="snapshot host name, stable across Airflow workers")
    cache_dir: str | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> "BackupSettings":
        names = [t.name for t in self.targets]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"backup target names must be unique, repeated: {dupes}")
        return self

    def target(self, name: str) -> BackupTarget:
        for t in self.targets:
            if t.name == name:
                return t
        raise KeyError(f"no backup target named {name!r} (configured: {[t.name for t in self.targets]})")


class RetentionSettings(Strict):
    days: int = Field(60, ge=0, description="landing-zone copies older than this may be freed")
    dry_run: bool = Field(True, description="report only; set false to really delete")
    schedule: str | None = Field("30 3 * * *", description="cron of microfair_retention")
    remove_empty_folders: bool = True
    max_check_age_hours: float = Field(
        48, gt=0, description="a target whose last successful restic check is older frees nothing"
    )
    restore_max_bytes: int = Field(
        64 << 20, ge=0,
        description="files up to this size are also restored from each counted copy just before deletion",
    )
