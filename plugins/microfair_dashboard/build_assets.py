"""Build the dashboard's front-end assets: htmx and its SSE extension, from the npm registry.

    python plugins/microfair_dashboard/build_assets.py [--force]

Runs ``npm ci`` on ``frontend/package-lock.json`` (exact versions, integrity-checked)
and copies the minified files with their licences into ``static/vendor/`` (gitignored).
The dashboard then needs nothing from the Internet at run time. A stamp file keyed on
the lock file makes a second run a no-op. Needs ``npm`` (Debian: ``apt-get install npm``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FRONTEND = HERE / "frontend"
VENDOR = HERE / "static" / "vendor"
STAMP = VENDOR / "manifest.json"

#: (npm package, file inside the package, name in static/vendor)
FILES = [
    ("htmx.org", "dist/htmx.min.js", "htmx.min.js"),
    ("htmx.org", "LICENSE", "htmx.LICENSE"),
    ("htmx-ext-sse", "dist/sse.min.js", "htmx-ext-sse.min.js"),
    ("htmx-ext-sse", "LICENSE", "htmx-ext-sse.LICENSE"),
]


def lock_digest() -> str:
    return hashlib.sha256((FRONTEND / "package-lock.json").read_bytes()).hexdigest()


def up_to_date() -> bool:
    try:
        manifest = json.loads(STAMP.read_text())
    except (OSError, ValueError):
        return False
    return manifest.get("lock_sha256") == lock_digest() and all((VENDOR / dst).is_file() for _, _, dst in FILES)


def build(force: bool = False) -> Path:
    if not force and up_to_date():
        print(f"front-end assets up to date in {VENDOR}")
        return VENDOR
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm not found: install it (Debian: apt-get install npm) to build the dashboard assets")
    subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                   cwd=FRONTEND, check=True)
    VENDOR.mkdir(parents=True, exist_ok=True)
    versions = {}
    for package, src, dst in FILES:
        pkg_dir = FRONTEND / "node_modules" / package
        versions[package] = json.loads((pkg_dir / "package.json").read_text())["version"]
        tmp = VENDOR / (dst + ".tmp")
        shutil.copyfile(pkg_dir / src, tmp)
        tmp.replace(VENDOR / dst)
    files = {dst: hashlib.sha256((VENDOR / dst).read_bytes()).hexdigest() for _, _, dst in FILES}
    STAMP.write_text(json.dumps({"lock_sha256": lock_digest(), "versions": versions, "files": files}, indent=2))
    print(f"front-end assets built in {VENDOR}: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    return VENDOR


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--force", action="store_true", help="rebuild even if the assets match the lock file")
    build(force=ap.parse_args(argv).force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
