"""microfair: the same functions the DAGs call, for IT staff at a terminal.

Exit codes: 0 success; 1 bad input or a failed check (message on stderr): an unreadable file,
a name that breaks the convention, QC flags (microfair qc), an acquisition that failed or was
quarantined (microfair ingest); 2 usage error (backup-status: 3 when not 3-2-1 compliant).
-v adds progress and the readers' warnings; tracebacks are shown with --debug only.
"""

# The module docstring is the --help text: keep it plain text (no reST markup).

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from microfair.config import ConfigError, init_local_config, load_config

log = logging.getLogger("microfair.cli")


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
            for note in r.notes:
                print(f"    note: {note}")
    return 0 if all(r.valid for r in reports) else 1


def cmd_inspect(args: argparse.Namespace) -> int:
    from microfair.imaging import UnreadableImage
    from microfair.metadata import extract_metadata

    path = _existing(args.file)
    with _reading(path):
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
    from microfair.convert import ConversionError, convert_to_zarr
    from microfair.imaging import UnreadableImage, open_image
    from microfair.metadata import extract_metadata

    path = _existing(args.file)
    settings = load_config(args.config).conversion if (args.config or _env_config()) else ConversionSettings()
    if args.ngff:
        settings = settings.model_copy(update={"ngff_version": args.ngff})
    with _reading(path):
        try:
            img = open_image(path)
            meta = extract_metadata(img)
        except UnreadableImage as exc:
            raise UserError(str(exc)) from None
    try:
        result = convert_to_zarr(img, Path(args.out), settings=settings, ome_xml=meta.ome_xml,
                                 overwrite=args.overwrite)
    except FileExistsError:
        raise UserError(f"{args.out} exists already; pass --overwrite to replace it") from None
    except ConversionError as exc:
        log.debug("conversion failed", exc_info=True)
        raise UserError(str(exc)) from None
    if args.json:
        _print_json(result.to_dict())
    else:
        print(conversion_summary(result))
    return 0


def conversion_summary(result: Any) -> str:
    """A few lines for people: path, seconds, bytes, and per scene its shape and pyramid levels."""
    from microfair.units import format_bytes

    lines = [f"wrote {result.path} (NGFF {result.ngff_version}) in {result.seconds:.1f} s",
             f"  {format_bytes(result.source_bytes)} of pixels read, {format_bytes(result.written_bytes)} written"]
    for s in result.scenes:
        shape = "x".join(str(n) for n in s.levels[0]) if s.levels else "?"
        lines.append(f"  scene {s.index} ({s.name}): {shape} {s.dtype} (t, c, z, y, x), {len(s.levels)} level(s), "
                     f"smallest {'x'.join(str(n) for n in s.levels[-1][-2:]) if s.levels else '?'}")
    lines.append(f"  pixel-exact proof: verified: {(result.extra.get('pixel_proof') or {}).get('verified', 'none')}")
    flags = result.qc.flags
    lines.append("  QC: passed" if not flags else f"  QC: {len(flags)} flag(s): " + "; ".join(f.reason for f in flags))
    lines.append("  (--json for the whole result)")
    return "\n".join(lines)


def cmd_qc(args: argparse.Namespace) -> int:
    from microfair.config.core import QcThresholds
    from microfair.imaging import UnreadableImage, open_image
    from microfair.qc import qc_from_zarr, qc_image
    from microfair.qc.nyquist import nyquist_of_target, with_nyquist

    path = _existing(args.target)
    thresholds = load_config(args.config).qc if (args.config or _env_config()) else QcThresholds()
    with _reading(path):
        try:
            img = None if path.is_dir() else open_image(path)
            report = qc_from_zarr(path, thresholds) if img is None else qc_image(img, thresholds)
            xml, meta = nyquist_of_target(path, img)  # the Nyquist check, as in the QC stage
        except UnreadableImage as exc:
            raise UserError(str(exc)) from None
    body = with_nyquist(report.to_dict(), xml, thresholds, image_metadata=meta, uid=path.name)
    _print_json(body)
    if body["passed"]:
        return 0
    print(f"microfair: QC of {path.name} raised {len(body['flags'])} flag(s): "
          + "; ".join(f["reason"] for f in body["flags"]), file=sys.stderr)
    return 1


def cmd_ingest(args: argparse.Namespace) -> int:
    from microfair.ingest_pass import run_pass, select_zones
    from microfair.ledger import Ledger

    cfg = load_config(args.config)
    try:
        select_zones(cfg, args.zone)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    ledger = Ledger.from_config(cfg)
    if args.scheduler:
        from distributed import Client

        try:
            client = Client(args.scheduler, timeout=30, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise UserError(f"no dask scheduler answered at {args.scheduler}: {exc}") from None
        with client:
            result = run_pass(cfg, ledger, zone=args.zone, client=client)
    else:
        result = run_pass(cfg, ledger, zone=args.zone)
    if args.json:
        _print_json(result.to_dict())
    else:
        print(ingest_summary(result))
    return 0 if result.ok else 1


def ingest_summary(result: Any) -> str:
    """One line per acquisition, then the waiting files, missing zones and the totals."""
    lines = []
    for a in result.acquisitions:
        mark = {"qc_done": "ok  ", "not_ready": "wait", "quarantined": "QUAR"}.get(a.state, "FAIL")
        where = "" if a.ok else f" at {a.stage}"
        lines.append(f"{mark} {Path(a.source).name} [{a.uid}] {a.state}{where} ({a.seconds:.1f} s)")
        if a.error:
            lines.append(f"       {a.error}")
        for flag in a.flags:
            lines.append(f"       warning: {flag}")
    for w in result.waiting:
        lines.append(f"wait {Path(w['source']).name}: {w['why']}")
    for m in result.missing_zones:
        lines.append(f"MISSING landing zone {m}: not mounted or does not exist")
    counts = result.counts()
    total = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "nothing ready"
    lines.append(f"ingest pass {result.run_id}: {len(result.acquisitions)} acquisition(s): {total}; "
                 f"{len(result.waiting)} waiting; {result.seconds:.1f} s")
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    from microfair.ledger import Ledger

    cfg = load_config(args.config)
    if args.forecast:  # microfair.monitor.forecast: growth, fill dates, footprint
        from microfair.monitor.forecast import print_forecast

        return print_forecast(cfg, Ledger.from_config(cfg), as_json=args.json)
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


@contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Any error of a reader becomes one line naming the file; its traceback goes to the debug log."""
    try:
        yield
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - readers raise anything; the user gets one clear line
        log.debug("reading %s failed", path, exc_info=True)
        raise UserError(f"{path.name}: cannot be read: {type(exc).__name__}: {exc}") from None


class _Console(logging.Filter):
    """What reaches the terminal: microfair's own messages; other libraries' only with -v, one line each."""

    def __init__(self, verbosity: int) -> None:
        super().__init__()
        self.verbosity = verbosity

    def filter(self, record: logging.LogRecord) -> bool:
        if self.verbosity >= 2:
            return True
        ours = record.name == "microfair" or record.name.startswith(("microfair.", "microfair_"))
        if not ours and (self.verbosity < 1 or record.levelno < logging.WARNING):
            return False
        record.exc_info, record.exc_text, record.stack_info = None, None, None  # tracebacks: --debug only
        return True


def configure_logging(verbosity: int) -> logging.Handler:
    """0: microfair's warnings; 1 (-v): its progress and other libraries' warnings; 2 (--debug): everything.

    Logger levels stay as they are (the conversion's reader-warning guard listens on the readers'
    loggers); only the terminal handler filters.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_Console(verbosity))
    root = logging.getLogger()
    handler.previous_level = root.level  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbosity >= 2 else logging.INFO if verbosity == 1 else logging.WARNING)
    logging.captureWarnings(True)
    return handler


def release_logging(handler: logging.Handler) -> None:
    """Undo :func:`configure_logging` (``main`` may be called more than once in a process)."""
    root = logging.getLogger()
    root.removeHandler(handler)
    root.setLevel(getattr(handler, "previous_level", logging.WARNING))
    logging.captureWarnings(False)


#: Stage packages that add their own sub-commands with ``register(subparsers)``.
EXTENSIONS = ("microfair.backup.cli", "microfair.deposit.cli", "microfair.irods.cli", "microfair.provenance.cli")


def build_parser() -> argparse.ArgumentParser:
    summary, _, details = __doc__.partition("\n\n")
    parser = argparse.ArgumentParser(prog="microfair", description=summary, epilog=details.strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="facility configuration (default: $MICROFAIR_CONFIG)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log progress to stderr, and other libraries' warnings")
    parser.add_argument("--debug", action="store_true", help="log everything, with tracebacks")
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

    p = sub.add_parser("convert", help="convert an image file to OME-Zarr; prints a short summary")
    p.add_argument("file")
    p.add_argument("out")
    p.add_argument("--ngff", choices=("0.4", "0.5"))
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--json", action="store_true", help="print the whole result (QC included) as JSON")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("qc", help="QC metrics of an image file or an OME-Zarr, as JSON; exit 1 when flagged")
    p.add_argument("target")
    p.set_defaults(func=cmd_qc)

    p = sub.add_parser(
        "ingest", help="one pass: discover, collect, validate, convert and QC every ready acquisition",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=("One ingest pass from a shell, with the functions the microfair_ingest DAG runs: scan the\n"
                     "landing zones, then collect, validate, convert and QC each ready acquisition in turn.\n"
                     "Every stage is recorded in the ledger as under Airflow. One bad file does not stop the\n"
                     "others. Conversion uses dask's threaded scheduler within conversion.memory_limit_mb,\n"
                     "or the dask scheduler given with --scheduler."),
        epilog=("Exit codes: 0 when every acquisition reached QC (QC and naming flags are warnings, files\n"
                "still being written wait for the next pass); 1 when an acquisition failed or was\n"
                "quarantined, or a landing zone is missing (the reasons are printed and in the ledger)."))
    p.add_argument("--zone", help="only this landing zone (its microscope name or path)")
    p.add_argument("--scheduler", help="address of a dask scheduler for the conversion (tcp://host:8786)")
    p.add_argument("--json", action="store_true", help="print the pass result as JSON")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("status", help="ledger summary")
    p.add_argument("--json", action="store_true")
    p.add_argument("--forecast", action="store_true",
                   help="storage growth per week, fill dates and footprint (exit 1 when a tier fills soon)")
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
    handler = configure_logging(2 if args.debug else 1 if args.verbose else 0)
    try:
        return int(args.func(args) or 0)
    except (UserError, ConfigError) as exc:
        print(f"microfair: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("microfair: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line for people; the traceback with --debug
        log.debug("microfair %s failed", args.command, exc_info=True)
        print(f"microfair {args.command}: {type(exc).__name__}: {exc} (--debug shows the traceback)", file=sys.stderr)
        return 1
    finally:
        release_logging(handler)


if __name__ == "__main__":
    sys.exit(main())
