"""Fixtures for the dashboard's browser test: one real Airflow API server and Debian's Chromium."""

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


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[AirflowStack]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins" / "microfair_dashboard"))
    import build_assets  # the same step as `make demo` and CI; a no-op when already built

    build_assets.build()
    s = start_stack(tmp_path_factory.mktemp("dashboard"), real_ingest=True)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
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
