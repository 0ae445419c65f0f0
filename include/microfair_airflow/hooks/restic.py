"""ResticHook: the restic client of one backup target, with its secrets from an Airflow connection.

Connection (type ``restic``; any other type works too) named by the target's ``connection_id``:

* ``password``: the restic repository password (passed to restic in its environment only);
* extras (all optional): ``repository`` (what the Test button opens when the hook has no backup target),
  ``key_file`` (SSH private key for sftp:), ``known_hosts`` (file), ``port`` (SSH port),
  ``aws_access_key_id`` / ``aws_secret_access_key`` (s3:), ``env`` (a mapping of further environment
  variables for restic's backend).

A target without ``connection_id`` uses its ``password_file`` from the facility file.
"""

from __future__ import annotations

import json
from typing import Any

from airflow.sdk import BaseHook

from microfair.backup.restic import Restic, ResticCredentials
from microfair.backup.run import file_credentials, restic_for
from microfair.config import FacilityConfig
from microfair.config.backup import BackupTarget, SftpSettings
from microfair_airflow.provider import ui_field_behaviour


def connection_credentials(conn: Any, sftp: SftpSettings | None = None,
                           password_file: str | None = None) -> ResticCredentials:
    """restic credentials from an Airflow connection; ``sftp``/``password_file`` fill what it leaves out."""
    extra = conn.extra_dejson or {}
    env = {str(k): str(v) for k, v in (extra.get("env") or {}).items()}
    if extra.get("aws_access_key_id"):
        env["AWS_ACCESS_KEY_ID"] = str(extra["aws_access_key_id"])
    if extra.get("aws_secret_access_key"):
        env["AWS_SECRET_ACCESS_KEY"] = str(extra["aws_secret_access_key"])
    port = extra.get("port") or conn.port or (sftp.port if sftp else None)
    return ResticCredentials(
        password=conn.password or None,
        password_file=None if conn.password else password_file,
        env=env,
        ssh_identity_file=extra.get("key_file") or (sftp.identity_file if sftp else None),
        ssh_known_hosts_file=extra.get("known_hosts") or (sftp.known_hosts_file if sftp else None),
        ssh_port=int(port) if port else None,
        ssh_connect_timeout=sftp.connect_timeout if sftp else 15,
    )


class ResticHook(BaseHook):
    """Build a :class:`~microfair.backup.restic.Restic` client for one backup target.

    :param target_name: the backup target (``backup.targets[].name``) in the facility configuration;
        optional for :meth:`test_connection` when the connection's extra names the ``repository``.
    :param restic_conn_id: the Airflow connection with the repository password; default: the target's.
    """

    conn_name_attr = "restic_conn_id"
    default_conn_name = "restic_default"
    conn_type = "restic"
    hook_name = "restic repository"

    def __init__(self, target_name: str | None = None, restic_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target_name = target_name
        self.restic_conn_id = restic_conn_id

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form (Airflow 3.2+ reads the same declaration from the provider info)."""
        return ui_field_behaviour(cls.conn_type)

    def get_credentials(self, target: BackupTarget) -> ResticCredentials:
        conn_id = self.restic_conn_id or target.connection_id
        if not conn_id:
            return file_credentials(target)
        return connection_credentials(self.get_connection(conn_id), target.sftp, target.password_file)

    def get_conn(self, cfg: FacilityConfig | None = None) -> Restic:
        if cfg is None:
            from microfair_airflow.common import facility

            cfg, _ = facility()
        if not self.target_name:
            raise ValueError("ResticHook needs a target_name (backup.targets[].name) to build a client")
        target = cfg.backup.target(self.target_name)
        return restic_for(cfg, target, self.get_credentials(target))

    def _client_to_test(self) -> Restic:
        """The target's client; without a target, the repository named by the connection's extra."""
        if self.target_name:
            return self.get_conn()
        conn_id = self.restic_conn_id or self.default_conn_name
        conn = self.get_connection(conn_id)
        repository = (conn.extra_dejson or {}).get("repository")
        if not repository:
            raise ValueError(f"connection {conn_id!r} names no repository: set its extra 'repository' "
                             "(e.g. sftp:backup@nas:/srv/restic)")
        return Restic(str(repository), connection_credentials(conn), cache_dir="", label=conn_id)

    def test_connection(self) -> tuple[bool, str]:
        """Open the repository with its password (``restic cat config``): the "Test" button.

        The message never carries the password: restic's errors are scrubbed of every secret.
        """
        secrets: list[str] = []
        try:
            restic = self._client_to_test()
            secrets = restic.credentials.secrets()
            out, _, _ = restic.run("cat", "config")
            repo_id = str(json.loads(out).get("id", ""))[:8]
            return True, f"opened restic repository {restic.repository} (id {repo_id}…)"
        except FileNotFoundError as exc:
            return False, f"restic is not installed (apt-get install restic): {exc.filename or exc}"
        except Exception as exc:  # noqa: BLE001 - ResticError & co., shown to the user
            message = f"{type(exc).__name__}: {exc}"
            for secret in secrets:
                message = message.replace(secret, "***")
            return False, message
