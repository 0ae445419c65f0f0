"""Dataverse/Zenodo deposits and the RO-Crate: the crate goes along but never makes a new version by itself.

The crate (``ro-crate-metadata.json`` in the reports folder and in the OME-Zarr root, hence in the Zarr
ZIP) changes whenever a stage records something, and the deposit itself refreshes it with the PID; a
re-run after that must still be a no-op naming the existing identifier, while a changed data file still
makes a new version carrying the current crate.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from microfair.deposit import DepositSelection
from microfair.deposit.targets.run import RECORD, build_repository, deposit
from microfair.provenance import CRATE_NAME, refresh
from microfair.provenance.write import crate_file
from tests.support.repositories import open_repo

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "include/microfair/deposit/example_study.yaml"
SEL = DepositSelection(project="DEMO")


@pytest.fixture(scope="module")
def facility(tmp_path_factory):
    from tests.support.synthetic_ingest import synthetic_facility

    cfg, ledger, uids = synthetic_facility(tmp_path_factory.mktemp("facility"), n=2)
    zarr = tmp_path_factory.mktemp("zarr") / "img.ome.zarr"
    for rel in ("zarr.json", "0/zarr.json", "0/c/0/0/0"):
        (zarr / rel).parent.mkdir(parents=True, exist_ok=True)
        (zarr / rel).write_bytes(rel.encode() * 10)
    ledger.update(uids[0], zarr_path=str(zarr))
    return cfg, ledger, uids


@pytest.fixture
def fac(facility, tmp_path):
    cfg, ledger, uids = facility
    for uid in uids:
        ledger.put_record(uid, RECORD, {})
        refresh(cfg, ledger, uid)  # a crate in the reports folder and the Zarr root before the first deposit
    study = tmp_path / "study.yaml"
    study.write_text(EXAMPLE.read_text())
    return cfg, ledger, uids, study


def _crates(items):
    return [i for i in items if i.name.rsplit("/", 1)[-1] == CRATE_NAME]


@pytest.mark.parametrize("kind", ["dataverse", "zenodo"])
def test_the_refreshed_crate_holds_the_pid_and_a_rerun_is_a_no_op(fac, kind):
    cfg, ledger, uids, study = fac
    with open_repo(kind) as repo:
        out = deposit(cfg, ledger, study, SEL, repo.target(), include_zarr=True)
        pub = out.publication
        assert out.action == "published"
        _plan, items, _ = build_repository(cfg, ledger, study, SEL, repo.target(), include_zarr=True)
        assert {i.name for i in _crates(items)} <= set(out.upload.uploaded) and _crates(items)  # sent the first time
        for uid in uids:  # the deposit refreshed the crates at once: the PID is in them
            crate = json.loads(crate_file(cfg, ledger, uid).read_text())
            assert any(e.get("identifier") == pub.pid for e in crate["@graph"])
        zarr = Path(ledger.require(uids[0]).zarr_path)
        assert pub.pid in (zarr / CRATE_NAME).read_text()
        before = list(repo.standin.log)
        again = deposit(cfg, ledger, study, SEL, repo.target(), include_zarr=True)
        assert again.action == "unchanged" and again.publication.pid == pub.pid and again.publication.id == pub.id
        assert [m for m, _p, _c in repo.standin.log[len(before):]] == ["GET"]  # nothing written
        assert repo.published_count() == 1


@pytest.mark.parametrize("kind", ["dataverse", "zenodo"])
def test_a_changed_data_file_still_makes_a_new_version_with_the_current_crate(fac, kind):
    cfg, ledger, uids, study = fac
    with open_repo(kind) as repo:
        first = deposit(cfg, ledger, study, SEL, repo.target(), include_zarr=True).publication
        chunk = Path(ledger.require(uids[0]).zarr_path) / "0/c/0/0/0"
        original = chunk.read_bytes()
        chunk.write_bytes(original[::-1])  # same size, other bytes
        try:
            out = deposit(cfg, ledger, study, SEL, repo.target(), include_zarr=True)
            _plan, items, _ = build_repository(cfg, ledger, study, SEL, repo.target(), include_zarr=True)
        finally:
            chunk.write_bytes(original)
        assert out.action == "published"
        archive = next(i for i in items if i.kind == "zarr-archive")
        assert archive.name in out.upload.uploaded
        crates = {i.name for i in _crates(items)}
        assert crates & set(out.upload.uploaded)  # the crate as it is now (with the first PID) went along
        if kind == "zenodo":
            assert out.publication.id != first.id
        else:
            assert out.publication.version == first.version + 1
        with zipfile.ZipFile(archive.local) as zf:
            assert zf.read("img.ome.zarr/0/c/0/0/0") == original[::-1]
