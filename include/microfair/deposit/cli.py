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


def cmd_validate(args: argparse.Namespace) -> int:
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
    dep = sub.add_parser("deposit", help="BioImage Archive deposit (PageTab)")
    dsub = dep.add_subparsers(dest="deposit_command", required=True)
    p = dsub.add_parser("validate", help="list every missing or invalid field, uploading nothing")
    _selection_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_validate)
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
