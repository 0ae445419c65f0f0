"""Fixtures for the browser tests: ONE real Airflow API server and ONE Debian Chromium for the whole package.

Both modules (the dashboard, and the connection form of our provider) use the same ``stack``: the real ingest
and the seeded ledger are done once, before the server starts, and the server has the connection form's
Test button enabled (``[core] test_connection = Enabled``) and the iRODS stand-in's zone file set. The modules
touch disjoint things (the form makes connections ``irods_form``/``irods_dead``; the dashboard reads
``irods_default`` and its ledger), so they may share it. Package scope: the server stops after the last
browser test, not at the end of the whole suite.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins"))  # microfair_dashboard, as Airflow loads it

from airflow_stack import AirflowStack, start_stack  # noqa: E402

CHROMIUM = os.environ.get("MICROFAIR_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@pytest.fixture(scope="package")
def stack(tmp_path_factory) -> Iterator[AirflowStack]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins" / "microfair_dashboard"))
    import build_assets  # the same step as `make demo` and CI; a no-op when already built

    build_assets.build()
    root = tmp_path_factory.mktemp("browser")
    s = start_stack(root, real_ingest=True, extra_env={
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",  # the connection form's Test button
        "MICROFAIR_IRODS_STANDIN_STATE": str(root / "irods-zone.pickle"),  # the stand-in session's zone
    })
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="package")
def browser():
    if not Path(CHROMIUM).exists() and not shutil.which(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"Chromium not found at {CHROMIUM}")
        pytest.skip(f"Chromium not found at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
def shoot(artifacts: Path):
    """``shoot(page, name)``: a full-page screenshot in tests/artifacts/, as a 128-colour PNG.

    The pages are flat colours and text, so a palette keeps them legible at a fraction of the size
    (small enough for the README to show them).
    """
    from PIL import Image

    def save(page, name: str) -> Path:
        path = artifacts / name
        page.screenshot(path=str(path), full_page=True)
        with Image.open(path) as img:
            small = img.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        small.save(path, optimize=True)
        return path

    return save
