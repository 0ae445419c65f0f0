"""``microfair backup-status``, ``microfair backup run`` and ``microfair retention``.

``register(subparsers)`` is called by :mod:`microfair.cli`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _load(args: argparse.Namespace) -> tuple[Any, Any]:
    from microfair.config import load_config
    from microfair.ledger import Ledger

    cfg = load_config(args.config)
    return cfg, Ledger.from_config(cfg)


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.1f} MB"


def cmd_backup_status(args: argparse.Namespace) -> int:
    from microfair.backup.policy import backup_status

    cfg, ledger = _load(args)
    status = backup_status(cfg, ledger, refresh=not args.stored)
    if args.json:
        print(json.dumps(status, indent=2, default=str, ensure_ascii=False))
        return 0 if status["compliant"] == len(status["datasets"]) else 3
    rule = status["rule"]
    print(f"3-{rule['media']}-{rule['offsite']} rule: {rule['copies']} verified copies, {rule['media']} media, "
          f"{rule['offsite']} off-site")
    print("targets:")
    for name, t in status["targets"].items():
        where = "off-site" if t["offsite"] else "on-site"
        state = f"ok, last run {t['last_run_at']}" if t["ok"] else f"NOT COUNTED: {t['reason']}"
        extra = (f"; added {_mb(t['bytes_added'])}, dedup x{t['dedup_ratio']}, {t['duration_s']} s"
                 if t.get("bytes_added") is not None else "")
        print(f"  {name:<14} {t['medium']:<14} {where:<9} {state}{extra}")
    print("projects:")
    for project, p in sorted(status["projects"].items()):
        print(f"  {project:<14} {p['compliant']}/{p['datasets']} dataset(s) 3-2-1, "
              f"{_mb(p['bytes_compliant'])} of {_mb(p['bytes'])}")
    print("datasets:")
    for d in status["datasets"]:
        mark = "3-2-1" if d["compliant"] else "NO   "
        print(f"  {mark} {d['copies']} cop{'y' if d['copies'] == 1 else 'ies'} "
              f"[{', '.join(d['media'])}] {d['name']} ({d['uid']})")
        for r in d["reasons"]:
            print(f"          - {r}")
    n, ok = len(status["datasets"]), status["compliant"]
    print(f"{ok} of {n} dataset(s) satisfy 3-2-1")
    return 0 if ok == n else 3


def _credentials(cfg: Any, target: Any) -> Any:
    if target.password_file or not target.connection_id:
        return None
    try:
        from microfair_airflow.hooks.restic import ResticHook
    except ImportError:
        from microfair.cli import UserError

        raise UserError(f"target {target.name} keeps its password in an Airflow connection; "
                        "install Airflow or set password_file") from None
    return ResticHook(target_name=target.name, restic_conn_id=target.connection_id).get_credentials(target)


def cmd_backup_run(args: argparse.Namespace) -> int:
    from microfair.backup import ResticError, evaluate_policy, run_backup

    cfg, ledger = _load(args)
    names = args.target or [t.name for t in cfg.backup.targets]
    status = 0
    for name in names:
        try:
            target = cfg.backup.target(name)
            run = run_backup(cfg, ledger, name, credentials=_credentials(cfg, target),
                             full=True if args.full else None)
        except (ResticError, KeyError) as exc:
            print(f"{name}: FAILED: {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"{name}: {run.state}, snapshot {run.snapshot}, added {_mb(run.bytes_added)} "
              f"(dedup x{run.dedup_ratio}) in {run.duration_s} s; {len(run.verified)} verified, "
              f"{len(run.unverified)} not" + (f"; {run.error}" if run.error else ""))
        if run.state != "succeeded":
            status = 1
    verdicts = evaluate_policy(cfg, ledger)
    print(f"3-2-1: {sum(v.compliant for v in verdicts)} of {len(verdicts)} dataset(s)")
    return status


def cmd_retention(args: argparse.Namespace) -> int:
    from microfair.backup.retention import run_retention
    from microfair.backup.run import file_credentials

    cfg, ledger = _load(args)
    report = run_retention(cfg, ledger, apply=True if args.apply else False, actor=args.actor,
                           credentials=lambda t: _credentials(cfg, t) or file_credentials(t))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, default=str, ensure_ascii=False))
        return 0
    mode = "DRY RUN (nothing deleted; use --apply to delete)" if report.dry_run else "APPLIED"
    print(f"retention: landing-zone copies older than {cfg.retention.days} days: {mode}")
    for i in report.items:
        when = f" (eligible {i.eligible_on})" if i.action == "wait" and i.eligible_on else ""
        label = {"delete": "would free", "deleted": "freed", "wait": "wait", "refuse": "KEEP", "freed": "done"}
        print(f"  {label.get(i.action, i.action):<10} {_mb(i.size_bytes):>10}  {i.path}{when}\n"
              f"             {i.reason}")
    print(f"{'would free' if report.dry_run else 'freed'} "
          f"{_mb(report.bytes_freeable if report.dry_run else report.bytes_freed)}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("backup-status", help="3-2-1 status per dataset, project and backup target")
    p.add_argument("--json", action="store_true")
    p.add_argument("--stored", action="store_true", help="show the last recorded verdicts, do not re-evaluate")
    p.set_defaults(func=cmd_backup_status)

    p = subparsers.add_parser("backup", help="back up the facility storage with restic")
    bsub = p.add_subparsers(dest="backup_command", required=True)
    run = bsub.add_parser("run", help="back up to every target (or --target), verify, evaluate 3-2-1")
    run.add_argument("--target", action="append", help="only this target (repeatable)")
    run.add_argument("--full", action="store_true", help="read all data and restore every dataset")
    run.set_defaults(func=cmd_backup_run)

    p = subparsers.add_parser("retention", help="free landing zones whose data is verified 3-2-1 (dry-run)")
    p.add_argument("--apply", action="store_true", help="really delete (default: report only)")
    p.add_argument("--actor", default="cli", help="name written in the audit log")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_retention)
