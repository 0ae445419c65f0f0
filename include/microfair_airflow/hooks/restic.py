"""ResticHook: the restic client of one backup target, with its secrets from an Airflow connection.

Connection (any type, e.g. ``generic``) named by the target's ``connection_id``:

* ``password``: the restic repository password (passed to restic in its environment only);
* extras (all optional): ``key_file`` (SSH private key for sftp:), ``known_hosts`` (file),
  ``port`` (SSH port), ``aws_access_key_id`` / ``aws_secret_access_key`` (s3:), ``env``
  (a mapping of further environment variables for restic's backend).

A target without ``connection_id`` uses its ``password_file`` from the facility file.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook

from microfair.backup.restic import Restic, ResticCredentials
from microfair.backup.run import file_credentials, restic_for
from microfair.config import FacilityConfig
from microfair.config.backup import BackupTarget


class ResticHook(BaseHook):
    """Build a :class:`~microfair.backup.restic.Restic` client for one backup target.

    :param target_name: the backup target (``backup.targets[].name``) in the facility configuration.
    :param restic_conn_id: the Airflow connection with the repository password; default: the target's.
    """

    conn_name_attr = "restic_conn_id"
    default_conn_name = "restic_default"
    conn_type = "generic"
    hook_name = "restic repository"

    def __init__(self, target_name: str, restic_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target_name = target_name
        self.restic_conn_id = restic_conn_id

    def get_credentials(self, target: BackupTarget) -> ResticCredentials:
        conn_id = self.restic_conn_id or target.connection_id
        if not conn_id:
            return file_credentials(target)
        conn = self.get_connection(conn_id)
        extra = conn.extra_dejson or {}
        sftp = target.sftp
        env = {str(k): str(v) for k, v in (extra.get("env") or {}).items()}
        if extra.get("aws_access_key_id"):
            env["AWS_ACCESS_KEY_ID"] = str(extra["aws_access_key_id"])
        if extra.get("aws_secret_access_key"):
            env["AWS_SECRET_ACCESS_KEY"] = str(extra["aws_secret_access_key"])
        port = extra.get("port") or conn.port or (sftp.port if sftp else None)
        return ResticCredentials(
            password=conn.password or None,
            password_file=None if conn.password else target.password_file,
            env=env,
            ssh_identity_file=extra.get("key_file") or (sftp.identity_file if sftp else None),
            ssh_known_hosts_file=extra.get("known_hosts") or (sftp.known_hosts_file if sftp else None),
            ssh_port=int(port) if port else None,
            ssh_connect_timeout=sftp.connect_timeout if sftp else 15,
        )

    def get_conn(self, cfg: FacilityConfig | None = None) -> Restic:
        if cfg is None:
            from microfair_airflow.common import facility

            cfg, _ = facility()
        target = cfg.backup.target(self.target_name)
        return restic_for(cfg, target, self.get_credentials(target))
