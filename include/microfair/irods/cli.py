"""``microfair irods …``: iRODS registration from a terminal (the same calls as the ``microfair_irods`` DAG).

    microfair irods pending [--project P]          datasets past QC not registered yet (ledger only)
    microfair irods status [UID …]                 what the ledger knows: the ``irods`` record and stage
    microfair irods register (UID … | --pending)   register now, with an iRODS environment file
    microfair irods find UID                       GenQuery on <prefix>.uid: where the dataset is

``register`` and ``find`` open a session from an ``irods_environment.json`` (``--env-file``, else
``$IRODS_ENVIRONMENT_FILE``, else ``~/.irods/irods_environment.json``) with the password of ``iinit``
(``~/.irods/.irodsA``) or, when set, ``$MICROFAIR_IRODS_PASSWORD``; never on the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from microfair.config import load_config

PASSWORD_VAR = "MICROFAIR_IRODS_PASSWORD"


def _facility(args: argparse.Namespace) -> tuple[Any, Any]:
    from microfair.ledger import Ledger

    cfg = load_config(args.config)
    return cfg, Ledger.from_config(cfg)


def open_session(env_file: str | None = None) -> Any:
    """An ``iRODSSession`` from an irods_environment.json (password from .irodsA or $MICROFAIR_IRODS_PASSWORD)."""
    from microfair.cli import UserError

    path = Path(env_file or os.environ.get("IRODS_ENVIRONMENT_FILE") or "~/.irods/irods_environment.json")
    path = path.expanduser()
    if not path.is_file():
        raise UserError(f"no iRODS environment file at {path} (use --env-file, or run iinit)")
    from irods.session import iRODSSession

    password = os.environ.get(PASSWORD_VAR)
    return iRODSSession(irods_env_file=str(path), **({"password": password} if password else {}))


def cmd_pending(args: argparse.Namespace) -> int:
    from microfair.irods import pending_datasets

    _, ledger = _facility(args)
    for uid in pending_datasets(ledger, args.project):
        print(uid)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    _, ledger = _facility(args)
    uids = args.uid or [d.uid for d in ledger.datasets()]
    out = []
    for uid in uids:
        st = ledger.stage_states(uid).get("irods")
        out.append({"uid": uid, "stage": st.state if st else "pending", "error": st.error if st else None,
                    "record": ledger.get_record(uid, "irods")})
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return 0
    for row in out:
        rec = row["record"] or {}
        where = rec.get("data_object") if row["stage"] == "succeeded" else (row["error"] or "")
        print(f"{row['uid']}\t{row['stage']}\t{where}")
    return 0


def cmd_register(args: argparse.Namespace) -> int:
    from microfair.cli import UserError
    from microfair.irods import IrodsError, IrodsStore, pending_datasets, register_dataset

    cfg, ledger = _facility(args)
    uids = list(args.uid or [])
    if args.pending:
        uids += pending_datasets(ledger, args.project)
    if not uids:
        raise UserError("nothing to register: name datasets or use --pending")
    failed = 0
    session = open_session(args.env_file)
    try:
        store = IrodsStore(session, resource=cfg.irods.resource)
        for uid in uids:
            try:
                reg = register_dataset(cfg, ledger, uid, store)
            except (IrodsError, KeyError) as exc:
                failed += 1
                print(f"{uid}: FAILED: {exc}", file=sys.stderr)
                continue
            print(f"{uid}: {reg.data_object} ({len(reg.transferred)} written, {reg.unchanged} unchanged, "
                  f"AVUs +{reg.avus_added}/-{reg.avus_removed})")
    finally:
        session.cleanup()
    return 1 if failed else 0


def cmd_find(args: argparse.Namespace) -> int:
    from microfair.irods import IrodsStore, find_dataset

    cfg = load_config(args.config)
    session = open_session(args.env_file)
    try:
        paths = find_dataset(IrodsStore(session), args.uid, cfg.irods.avu_prefix)
    finally:
        session.cleanup()
    for p in paths:
        print(p)
    return 0 if paths else 1


def register(sub: argparse._SubParsersAction) -> None:
    irods = sub.add_parser("irods", help="iRODS registration (verified transfer, AVUs, ACLs)")
    isub = irods.add_subparsers(dest="irods_command", required=True)
    p = isub.add_parser("pending", help="datasets past QC not registered in iRODS yet")
    p.add_argument("--project")
    p.set_defaults(func=cmd_pending)
    p = isub.add_parser("status", help="the ledger's iRODS stage and record per dataset")
    p.add_argument("uid", nargs="*")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    p = isub.add_parser("register", help="register datasets now (irods_environment.json)")
    p.add_argument("uid", nargs="*")
    p.add_argument("--pending", action="store_true", help="every pending dataset")
    p.add_argument("--project", help="with --pending: only this project")
    p.add_argument("--env-file", help="irods_environment.json (default: $IRODS_ENVIRONMENT_FILE or ~/.irods)")
    p.set_defaults(func=cmd_register)
    p = isub.add_parser("find", help="GenQuery: the iRODS paths of a dataset, from its ledger uid")
    p.add_argument("uid")
    p.add_argument("--env-file", help="irods_environment.json (default: $IRODS_ENVIRONMENT_FILE or ~/.irods)")
    p.set_defaults(func=cmd_find)
