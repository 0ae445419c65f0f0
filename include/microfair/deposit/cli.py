"""``microfair deposit …`` and ``microfair datacite …``: the deposit steps for IT staff at a terminal."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from microfair.config import load_config


def _selection(args: argparse.Namespace):
    from microfair.deposit import DepositSelection

    return DepositSelection(project=args.project, study=args.study, uids=tuple(args.uid or ()))


def _plan(args: argparse.Namespace):
    from microfair.cli import UserError
    from microfair.deposit.run import build
    from microfair.deposit.study import StudyFileError
    from microfair.ledger import Ledger

    cfg = load_config(args.config)
    try:
        return build(cfg, Ledger.from_config(cfg), Path(args.study_file), _selection(args))
    except StudyFileError as exc:
        raise UserError(str(exc)) from None


def _repository_plan(args: argparse.Namespace):
    from microfair.cli import UserError
    from microfair.deposit.study import StudyFileError
    from microfair.deposit.targets.run import LocalChecks, build_repository
    from microfair.ledger import Ledger

    cfg = load_config(args.config)
    try:
        return build_repository(cfg, Ledger.from_config(cfg), Path(args.study_file), _selection(args),
                                LocalChecks(args.target), include_zarr=getattr(args, "include_zarr", False))
    except StudyFileError as exc:
        raise UserError(str(exc)) from None


def cmd_validate(args: argparse.Namespace) -> int:
    if args.target != "bia":
        plan, items, problems = _repository_plan(args)
        if args.json:
            print(json.dumps({"valid": not problems, "target": args.target, "files": len(items),
                              "problems": [{"path": p.path, "message": p.message} for p in problems]}, indent=2))
        elif problems:
            print(f"{args.study_file}: {len(problems)} problem(s) to fix before the {args.target} deposit:",
                  file=sys.stderr)
            for p in problems:
                print(f"  - {p}", file=sys.stderr)
        else:
            print(f"{args.study_file}: ready for {args.target} ({len(items)} file(s) of {len(plan.uids())} dataset(s))")
        return 1 if problems else 0
    plan, problems = _plan(args)
    if args.json:
        print(json.dumps({"valid": not problems, "files": len(plan.files()),
                          "problems": [{"path": p.path, "message": p.message} for p in problems]}, indent=2))
    elif problems:
        print(f"{args.study_file}: {len(problems)} problem(s) to fix before the deposit:", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
    else:
        print(f"{args.study_file}: ready ({len(plan.files())} file(s), {len(plan.components)} component(s), "
              f"{len(plan.acquisitions())} image acquisition(s))")
    return 1 if problems else 0


def cmd_run(args: argparse.Namespace) -> int:
    """Deposit now, with the connection from the environment (``AIRFLOW_CONN_<ID>``, as Airflow reads it)."""
    from microfair.cli import UserError
    from microfair.deposit import DepositInvalid
    from microfair.deposit.study import StudyFileError
    from microfair.deposit.targets import TARGETS, RepositoryError
    from microfair.deposit.targets.connections import from_environment, target_from_environment
    from microfair.ledger import Ledger

    cfg = load_config(args.config)
    ledger = Ledger.from_config(cfg)
    conn_id = args.conn_id or TARGETS[args.target].connection_id
    try:
        if args.target == "bia":
            from microfair.deposit.biostudies import BiostudiesClient, FtpAccess
            from microfair.deposit.targets.bia import deposit_bia

            conn = from_environment(conn_id)
            if conn is None:
                raise UserError(f"no connection {conn_id!r}: set AIRFLOW_CONN_{conn_id.upper()}")
            x = conn.extra
            ftp = FtpAccess(str(x["ftp_host"]), int(x.get("ftp_port") or 21), str(x.get("ftp_user") or "anonymous"),
                            str(x.get("ftp_password") or "")) if x.get("ftp_host") else None
            client = BiostudiesClient(conn.host, conn.login, conn.password, ftp=ftp, retries=cfg.biostudies.retries,
                                      backoff_seconds=cfg.biostudies.backoff_seconds)
            import os

            poll = float(os.environ.get("MICROFAIR_BIOSTUDIES_POLL_SECONDS") or cfg.biostudies.poll_seconds)
            pub = deposit_bia(cfg, ledger, Path(args.study_file), _selection(args), client, poll_seconds=poll)
            action = "published"
        else:
            from microfair.deposit.targets.run import deposit

            target = target_from_environment(args.target, conn_id, retries=cfg.biostudies.retries,
                                             backoff_seconds=cfg.biostudies.backoff_seconds)
            out = deposit(cfg, ledger, Path(args.study_file), _selection(args), target, publish=not args.draft,
                          include_zarr=args.include_zarr)
            pub, action = out.publication, out.action
    except (LookupError, StudyFileError) as exc:
        raise UserError(str(exc)) from None
    except (DepositInvalid, RepositoryError) as exc:
        print(f"{args.target}: {exc}", file=sys.stderr)
        return 1
    print(f"{args.target}: {action}: {pub.pid} {pub.landing_page or ''}".rstrip())
    return 0


def cmd_pagetab(args: argparse.Namespace) -> int:
    plan, problems = _plan(args)
    sub = plan.pagetab()
    text = sub.dumps() + "\n" if args.format == "json" else sub.to_tsv()
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    for p in problems:
        print(f"warning: {p}", file=sys.stderr)
    return 0


def cmd_datacite_export(args: argparse.Namespace) -> int:
    from microfair.cli import UserError
    from microfair.deposit.run import datacite_for_accession
    from microfair.ledger import Ledger

    cfg = load_config(args.config)
    try:
        payload = datacite_for_accession(cfg, Ledger.from_config(cfg), args.accession)
    except KeyError as exc:
        raise UserError(str(exc.args[0])) from None
    print(json.dumps(payload, indent=2, ensure_ascii=False))
    return 0


def _selection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("study_file", help="study metadata file (YAML), see include/microfair/deposit/example_study.yaml")
    p.add_argument("--project", help="deposit the datasets of this project")
    p.add_argument("--study", help="… and only of this study")
    p.add_argument("--uid", action="append", help="… or only these datasets (repeatable)")


def register(sub: argparse._SubParsersAction) -> None:
    dep = sub.add_parser("deposit", help="deposit to the BioImage Archive (PageTab), Dataverse or Zenodo")
    dsub = dep.add_subparsers(dest="deposit_command", required=True)
    p = dsub.add_parser("validate", help="list every missing or invalid field, uploading nothing")
    _selection_args(p)
    p.add_argument("--target", choices=("bia", "dataverse", "zenodo"), default="bia",
                   help="the repository whose rules apply (default: bia)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_validate)
    p = dsub.add_parser("run", help="deposit now (connection from AIRFLOW_CONN_<ID> in the environment)")
    _selection_args(p)
    p.add_argument("--target", choices=("bia", "dataverse", "zenodo"), required=True)
    p.add_argument("--conn-id", help="connection id (default: biostudies_default, dataverse_default, zenodo_default)")
    p.add_argument("--draft", action="store_true", help="Dataverse/Zenodo: leave a draft for a person to publish")
    p.add_argument("--include-zarr", action="store_true", help="Dataverse/Zenodo: also each OME-Zarr as one ZIP")
    p.set_defaults(func=cmd_run)
    p = dsub.add_parser("pagetab", help="print the BioImages.v5 PageTab the deposit would submit")
    _selection_args(p)
    p.add_argument("--format", choices=("json", "tsv"), default="json")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
    p.set_defaults(func=cmd_pagetab)

    dc = sub.add_parser("datacite", help="DataCite metadata of deposited studies")
    csub = dc.add_subparsers(dest="datacite_command", required=True)
    p = csub.add_parser("export", help="print the DataCite 4.x JSON (REST /dois payload) of a deposited study")
    p.add_argument("accession", help="BioStudies accession, e.g. S-BIAD1234")
    p.set_defaults(func=cmd_datacite_export)
