"""A ledger locked by another writer for longer than the busy timeout: a clear error, nothing half-applied."""

from __future__ import annotations

import sqlite3

import pytest

from microfair.collect import collect, scan
from microfair.config import init_local_config, load_config
from microfair.ledger import Ledger, LedgerBusy


def _facility(tmp_path) -> tuple:
    """A facility with one acquisition waiting, its ledger (0.3 s busy timeout), and another writer's
    connection holding an exclusive lock on that ledger."""
    cfg = load_config(init_local_config(tmp_path / "facility"))
    ledger = Ledger(cfg.ledger.url, busy_timeout_s=0.3)
    zone = cfg.landing_zones[0].path
    (zone / "P1" / "S1" / "E1").mkdir(parents=True)
    (zone / "P1" / "S1" / "E1" / "a.tif").write_bytes(b"\x01" * 4096)
    holder = sqlite3.connect(cfg.ledger.url.split(":///", 1)[1], timeout=0.1, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    return cfg, ledger, holder


@pytest.fixture
def locked(tmp_path):
    cfg, ledger, holder = _facility(tmp_path)
    yield cfg, ledger
    holder.execute("ROLLBACK")
    holder.close()


def test_a_write_on_a_locked_ledger_names_the_ledger_and_the_timeout(locked) -> None:
    cfg, ledger = locked
    with pytest.raises(LedgerBusy, match=r"locked by another writer for more than 0.3 s.*nothing was changed") as err:
        ledger.upsert_dataset("mf-x", microscope="m", source_path="/x", name="x")
    assert cfg.ledger.url in str(err.value)


def test_collect_on_a_locked_ledger_fails_clearly_and_writes_nothing(locked, tmp_path) -> None:
    cfg, ledger = locked
    with pytest.raises(LedgerBusy):
        scan(cfg, ledger, now=None)
    raw = [p for p in cfg.storage.raw.rglob("*") if p.is_file()] if cfg.storage.raw.exists() else []
    assert raw == []


def test_the_same_collect_succeeds_once_the_lock_is_gone(tmp_path) -> None:
    cfg, ledger, holder = _facility(tmp_path)
    with pytest.raises(LedgerBusy):
        ledger.upsert_dataset("mf-y", microscope="m", source_path="/y", name="y")
    holder.execute("ROLLBACK")  # the other writer is done
    holder.close()
    assert ledger.get("mf-y") is None  # the refused write left nothing behind
    ready = []
    for _ in range(3):  # quiescence takes two looks
        ready = scan(cfg, ledger).ready
        if ready:
            break
    assert ready, "the file never became ready"
    assert collect(cfg, ledger, ready[0]) == "collected"
