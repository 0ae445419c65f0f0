"""3-2-1 backup with restic, the policy checker and the retention robot.

* :func:`run_backup` backs up the facility storage to one target and verifies the copy;
* :func:`evaluate_policy` decides, per dataset, whether 3-2-1 holds with verified copies;
* :func:`run_retention` frees landing zones (dry-run by default) only when it does.
"""

from microfair.backup.policy import Verdict, backup_status, evaluate_policy, target_health
from microfair.backup.restic import (
    CacheFullError,
    DamagedContent,
    DiskFullError,
    RepositoryUnreachable,
    Restic,
    ResticCredentials,
    ResticError,
    ResticNotInstalled,
)
from microfair.backup.retention import RetentionItem, RetentionReport, run_retention
from microfair.backup.run import TargetRun, backup_paths, file_credentials, record_kind, restic_for, run_backup

__all__ = ["CacheFullError", "DamagedContent", "DiskFullError", "ResticNotInstalled", "RepositoryUnreachable",
           "Restic", "ResticCredentials", "ResticError", "RetentionItem",
           "RetentionReport", "TargetRun", "Verdict", "backup_paths", "backup_status", "evaluate_policy",
           "file_credentials", "record_kind", "restic_for", "run_backup", "run_retention", "target_health"]
