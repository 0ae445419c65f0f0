"""The ``microfair`` command: the same functions the DAGs call, for IT staff at a terminal.

Every command exits 0 on success, 1 when the input is bad (with a message on
stderr), and 2 on a usage error.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

from microfair.config import ConfigError, init_local_config, load_config


class UserError(Exception):
    """Bad input from the user: printed without a traceback, exit code 1."""


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str, ensure_ascii=False))


def cmd_config_init(args: argparse.Namespace) -> int:
    path = init_local_config(Path(args.dir), tuple(args.microscope or ("demo-scope",)))
    print(f"wrote {path}\nexport MICROFAIR_CONFIG={path}")
    return 0


def cmd_check_name(args: argparse.Namespace) -> int:
    from microfair.naming import check_name

    types, max_length = ("RAW", "processed"), 128
    if args.config or _env_config():
        cfg = load_config(args.config)
        types, max_length = tuple(cfg.naming.types), cfg.naming.max_length
    reports = [check_name(Path(n).name, types=types, max_length=max_length) for n in args.names]
    if args.json:
        _print_json([r.to_dict() for r in reports])
    else:
        for r in reports:
            print(f"{'ok ' if r.valid else 'BAD'} {r.name}")
            for v in r.violations:
                print(f"    - {v}")
            if r.suggestion:
                print(f"    suggested: {r.suggestion}")
    return 0 if all(r.valid for r in reports) else 1


def cmd_inspect(args: argparse.Namespace) -> int:
    from microfair.imaging import UnreadableImage
    from microfair.metadata import extract_metadata

    path = _existing(args.file)
    try:
        meta = extract_metadata(path)
    except UnreadableImage as exc:
        raise UserError(str(exc)) from None
    out = meta.to_dict()
    if not args.ome_xml:
        out.pop("ome_xml", None)
    _print_json(out)
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from microfair.config.core import ConversionSettings
    from microfair.convert import convert_to_zarr
    from microfair.imaging import UnreadableImage, open_image
    from microfair.metadata import extract_metadata

    path = _existing(args.file)
    settings = load_config(args.config).conversion if (args.config or _env_config()) else ConversionSettings()
    if args.ngff:
        settings = settings.model_copy(update={"ngff_version": args.ngff})
    try:
        img = open_image(path)
        meta = extract_metadata(img)
    except UnreadableImage as exc:
        raise UserError(str(exc)) from None
    result = convert_to_zarr(img, Path(args.out), settings=settings, ome_xml=meta.ome_xml, overwrite=args.overwrite)
    _print_json(result.to_dict() if hasattr(result, "to_dict") else str(result))
    return 0


def cmd_qc(args: argparse.Namespace) -> int:
    from microfair.config.core import QcThresholds
    from microfair.imaging import UnreadableImage, open_image
    from microfair.qc import qc_from_zarr, qc_image

    path = _existing(args.target)
    thresholds = load_config(args.config).qc if (args.config or _env_config()) else QcThresholds()
    try:
        if path.is_dir():
            report = qc_from_zarr(path, thresholds)
        else:
            report = qc_image(open_image(path), thresholds)
    except UnreadableImage as exc:
        raise UserError(str(exc)) from None
    _print_json(report.to_dict())
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from microfair.ledger import Ledger

    cfg = load_config(args.config)
    summary = Ledger.from_config(cfg).summary()
    if args.json:
        _print_json(summary)
        return 0
    from microfair.units import format_bytes

    print(f"{cfg.facility.name}: {summary['datasets']} dataset(s), {format_bytes(summary['bytes'])} collected")
    for state, n in sorted(summary["by_state"].items()):
        print(f"  {state:<12} {n}")
    if summary["stages"]:
        print("stages:")
        for stage, states in summary["stages"].items():
            print(f"  {stage:<10} " + ", ".join(f"{k} {v}" for k, v in sorted(states.items())))
    if summary["problems"]:
        print("needs attention:")
        for p in summary["problems"]:
            print(f"  {p['state']:<11} {p['name']} [{p['uid']}]\n              {p['reason']}")
    return 0


def _env_config() -> bool:
    import os

    return bool(os.environ.get("MICROFAIR_CONFIG"))


def _existing(p: str) -> Path:
    path = Path(p)
    if not path.exists():
        raise UserError(f"{p}: no such file or folder")
    return path


#: Stage packages that add their own sub-commands with ``register(subparsers)``.
EXTENSIONS = ("microfair.backup.cli", "microfair.deposit.cli", "microfair.irods.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="microfair", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="facility configuration (default: $MICROFAIR_CONFIG)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    config = sub.add_parser("config", help="facility configuration")
    csub = config.add_subparsers(dest="config_command", required=True)
    init = csub.add_parser("init", help="write a runnable local configuration rooted in DIR")
    init.add_argument("dir")
    init.add_argument("--microscope", action="append", help="a landing zone per microscope (repeatable)")
    init.set_defaults(func=cmd_config_init)

    p = sub.add_parser("check-name", help="check file names against the naming convention")
    p.add_argument("names", nargs="+")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_check_name)

    p = sub.add_parser("inspect", help="print the metadata of an image file as JSON")
    p.add_argument("file")
    p.add_argument("--ome-xml", action="store_true", help="include the full OME-XML")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("convert", help="convert an image file to OME-Zarr")
    p.add_argument("file")
    p.add_argument("out")
    p.add_argument("--ngff", choices=("0.4", "0.5"))
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("qc", help="QC metrics of an image file or an OME-Zarr, as JSON")
    p.add_argument("target")
    p.set_defaults(func=cmd_qc)

    p = sub.add_parser("status", help="ledger summary")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    for name in EXTENSIONS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except (UserError, ConfigError) as exc:
        print(f"microfair: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
