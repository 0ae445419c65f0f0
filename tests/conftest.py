"""Shared fixtures: a throw-away facility (configuration + ledger) and the real sample files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from microfair.config import FacilityConfig, init_local_config, load_config
from microfair.ledger import Ledger

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def facility_config(tmp_path: Path) -> FacilityConfig:
    """A runnable local configuration rooted in a temporary folder (stability delay 0)."""
    path = init_local_config(tmp_path / "facility")
    cfg = load_config(path)
    for z in cfg.landing_zones:
        z.stability_seconds = 0.0
    return cfg


@pytest.fixture
def ledger(facility_config: FacilityConfig) -> Ledger:
    return Ledger.from_config(facility_config)


@pytest.fixture(scope="session")
def testdata() -> Path:
    """The real Zeiss and Leica sample files (``$MICROFAIR_TESTDATA``); skips when not set."""
    value = os.environ.get("MICROFAIR_TESTDATA")
    if not value:
        if os.environ.get("CI"):
            pytest.fail("MICROFAIR_TESTDATA must be set in CI")
        pytest.skip("MICROFAIR_TESTDATA is not set")
    path = Path(value).resolve()
    if not path.is_dir():
        pytest.fail(f"MICROFAIR_TESTDATA={value} is not a folder")
    return path


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory) -> Path:
    """An isolated Airflow home with a migrated SQLite metadata database, one per test module
    (a copy of the one ``airflow db migrate`` makes once per session: :mod:`tests.support.airflow_db`)."""
    from tests.support.airflow_db import migrated_db

    home = tmp_path_factory.mktemp("airflow")
    migrated_db(home)
    return home
