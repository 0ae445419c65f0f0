"""``microfair provenance UID``: the dataset's chain from the acquisition to the DOI, from its RO-Crate.

    microfair provenance UID            the chain, human-readable (built from the ledger now)
    microfair provenance UID --json     the crate itself (ro-crate-metadata.json, reports-folder rendering)
    microfair provenance UID --check    also run the structural check; exit 1 when it finds problems
    microfair provenance UID --write    refresh the crate in the OME-Zarr and the reports folder first
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def cmd_provenance(args: argparse.Namespace) -> int:
    from microfair.cli import UserError
    from microfair.config import load_config
    from microfair.ingest import report_dir
    from microfair.ledger import Ledger
    from microfair.provenance import build_crate, check_crate, refresh
    from microfair.provenance.chain import format_chain, read_chain

    cfg = load_config(args.config)
    ledger = Ledger.from_config(cfg)
    ds = ledger.get(args.uid)
    if ds is None:
        raise UserError(f"{args.uid}: no such dataset in the ledger")
    if args.write:
        refresh(cfg, ledger, args.uid)
    root: Any = report_dir(cfg, ds) if ds.raw_path else None
    crate = build_crate(ledger, args.uid, root)
    if args.json:
        print(json.dumps(crate, indent=2, ensure_ascii=False))
    else:
        print(format_chain(read_chain(crate)))
    if args.check:
        problems = check_crate(crate)
        for p in problems:
            print(f"problem: {p}")
        if not problems:
            print("crate check: no problems")
        return 1 if problems else 0
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("provenance", help="a dataset's provenance chain from its RO-Crate (acquisition to DOI)")
    p.add_argument("uid")
    p.add_argument("--json", action="store_true", help="print the RO-Crate JSON-LD")
    p.add_argument("--check", action="store_true", help="check the crate's structure; exit 1 on problems")
    p.add_argument("--write", action="store_true", help="refresh the crate files first")
    p.set_defaults(func=cmd_provenance)
