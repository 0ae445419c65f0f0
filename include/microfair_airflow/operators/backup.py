"""Operators of microfair_backup and microfair_retention: parameters only, the work is in microfair.backup."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

log = logging.getLogger(__name__)


class BackupTargetOperator(BaseOperator):
    """Back up the facility storage to one restic target, verify the copy, record it in the ledger.

    :param target_name: backup target name from the facility configuration (templated; mapped per target).
    :param full: ``True`` forces a full verification (read all data, restore every dataset),
        ``False`` skips it; ``None`` (default) runs it when ``backup.full_verification_days`` have passed.
    :param config_path: facility configuration; ``$MICROFAIR_CONFIG`` when omitted.
    """

    template_fields: Sequence[str] = ("target_name", "full", "config_path")
    ui_color = "#d9f2d9"

    def __init__(self, *, target_name: str, full: bool | str | None = None, config_path: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target_name = target_name
        self.full = full
        self.config_path = config_path

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowException, AirflowFailException

        from microfair.backup import ResticError, ResticNotInstalled, run_backup
        from microfair_airflow.common import facility, run_context
        from microfair_airflow.hooks.restic import ResticHook

        cfg, ledger = facility(self.config_path)
        full = self.full
        if isinstance(full, str):
            full = {"true": True, "false": False}.get(full.strip().lower())
        target = cfg.backup.target(self.target_name)
        hook = ResticHook(target_name=target.name)
        try:
            result = run_backup(cfg, ledger, target.name, credentials=hook.get_credentials(target),
                                ctx=run_context(context), full=full)
        except ResticNotInstalled as exc:  # retrying will not install it
            raise AirflowFailException(exc.reason) from None
        except ResticError as exc:
            # The reason is in the ledger too; the copies on this target no longer count. A full backup
            # cache, a server that is down… are retried (the task's retries).
            raise AirflowException(exc.reason) from None
        log.info("target %s: %s; %d bytes added, dedup x%.1f, %.1f s, %d dataset(s) verified",
                 target.name, result.state, result.bytes_added, result.dedup_ratio, result.duration_s,
                 len(result.verified))
        for uid, reason in result.unverified.items():
            log.warning("dataset %s: not verified on target %s: %s", uid, target.name, reason)
        if result.state != "succeeded":
            raise AirflowException(result.error or f"target {target.name}: {result.state}")
        return {k: v for k, v in result.to_dict().items() if k not in ("verified", "unverified", "samples")}


class RetentionOperator(BaseOperator):
    """Free landing-zone copies whose dataset is verified 3-2-1 (dry-run unless the facility file says so).

    Before each deletion every counted backup copy is checked in its repository (restic, with the
    target's Airflow connection): see :mod:`microfair.backup.copies`.

    :param apply: delete for real; ``None`` (default) follows ``retention.dry_run`` in the facility file.
        Passing ``True`` still requires ``retention.dry_run: false`` (deletion needs an explicit setting).
    :param config_path: facility configuration; ``$MICROFAIR_CONFIG`` when omitted.
    """

    template_fields: Sequence[str] = ("config_path",)
    ui_color = "#ffe4cc"

    def __init__(self, *, apply: bool | None = None, config_path: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.apply = apply
        self.config_path = config_path

    def execute(self, context: Any) -> dict[str, Any]:
        from microfair.backup import run_retention
        from microfair_airflow.common import facility
        from microfair_airflow.hooks.restic import ResticHook

        cfg, ledger = facility(self.config_path)
        apply = not cfg.retention.dry_run and self.apply is not False
        # Each counted backup copy is checked in its repository before a deletion: the hook gives the secrets.
        report = run_retention(cfg, ledger, apply=apply, actor=f"airflow:{getattr(context.get('ti'), 'dag_id', '?')}",
                               credentials=lambda t: ResticHook(target_name=t.name).get_credentials(t))
        verb = "freed" if apply else "would free"
        for i in report.items:
            log.info("dataset %s: %s %s%s: %s", i.uid, i.action, i.path,
                     f" (eligible {i.eligible_on})" if i.action == "wait" else "", i.reason)
        total = report.bytes_freed if apply else report.bytes_freeable
        log.info("retention (%s): %s %.1f MB in %d file(s); %d kept, %d waiting", "applied" if apply else "dry run",
                 verb, total / 1e6, sum(i.action in ("delete", "deleted") for i in report.items),
                 sum(i.action == "refuse" for i in report.items), sum(i.action == "wait" for i in report.items))
        return {"dry_run": report.dry_run, "bytes": total,
                "counts": {a: sum(i.action == a for i in report.items) for a in
                           ("delete", "deleted", "wait", "refuse", "freed")}}


def facility_setting(*keys: str, default: Any = None) -> Any:
    """One value of the facility file (e.g. ``backup.schedule``), read cheaply at DAG-parse time.

    No validation and no ledger; any problem gives ``default`` so a broken file still shows the DAG.
    """
    import os

    import yaml

    path = os.environ.get("MICROFAIR_CONFIG")
    if not path:
        return default
    try:
        with open(path, encoding="utf-8") as f:
            node: Any = yaml.safe_load(f) or {}
        for k in keys:
            if not isinstance(node, dict) or k not in node:
                return default
            node = node[k]
        return node
    except (OSError, yaml.YAMLError):
        return default
