"""The repository deposits (Dataverse, Zenodo) give the files of an acquisition's companion folder (a .vsi's
``_<stem>_/``, an .oif's ``.oif.files/``) the kind ``companion``, as the BIA file list gives them the role
``companion``; ``metadata`` is for the RO-Crate beside the raw file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from microfair.deposit import DepositSelection, builder, load_study, plan_deposit
from microfair.provenance.digest import CRATE_NAME
from microfair.deposit.targets.run import gather_items

EXAMPLE_STUDY = Path(__file__).resolve().parents[2] / "include/microfair/deposit/example_study.yaml"
FOLDER = Path("DEMO", "Study", "2025-01-01")
ACQUISITIONS = {  # main file -> its companion files (relative to the main file's folder)
    "slide.vsi": {"_slide_/stack1/frame_t_0.ets": b"ets-pixels" * 300},
    "scan.oif": {"scan.oif.files/s_C001.tif": b"plane-1" * 200, "scan.oif.files/s_C002.tif": b"plane-2" * 200},
}


def _seed(cfg, ledger) -> dict[str, str]:
    """The acquisitions as collect leaves them in the raw tier, companions recorded with ledger role companion."""
    uids = {}
    for name, companions in ACQUISITIONS.items():
        raw = Path(cfg.storage.raw) / FOLDER / name
        raw.parent.mkdir(parents=True, exist_ok=True)
        main = f"header of {name}".encode() * 50
        raw.write_bytes(main)
        uid = hashlib.sha1(name.encode()).hexdigest()[:16]
        ledger.upsert_dataset(uid, microscope=cfg.landing_zones[0].microscope, name=name, project="DEMO",
                              source_path=str(Path(cfg.landing_zones[0].path) / FOLDER / name),
                              study="Study", experiment="2025-01-01", raw_path=str(raw), size_bytes=len(main),
                              sha256=hashlib.sha256(main).hexdigest(), state="qc_done")
        ledger.add_file(uid, "raw", raw, size_bytes=len(main), sha256=hashlib.sha256(main).hexdigest())
        for rel, data in companions.items():
            p = raw.parent / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
            ledger.add_file(uid, "companion", p, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
        uids[name] = uid
    return uids


def _crate_beside(cfg, ledger, ds, remote, acquisition):
    """Stands in for the provenance stage's crate of ``ds`` (a small JSON file beside the raw file)."""
    path = Path(ds.raw_path).with_name(f"{Path(ds.raw_path).name}.{CRATE_NAME}")
    path.write_text('{"@graph": []}')
    return [builder.DepositFile(ds.uid, path, f"{remote}.{CRATE_NAME}", path.stat().st_size,
                                hashlib.sha256(path.read_bytes()).hexdigest(), ds.microscope, acquisition)]


@pytest.mark.parametrize("target", ["dataverse", "zenodo"])
def test_companion_files_are_deposited_with_kind_companion(facility_config, ledger, target, monkeypatch) -> None:
    uids = _seed(facility_config, ledger)
    monkeypatch.setattr(builder, "crate_files", _crate_beside)
    study, problems = load_study(EXAMPLE_STUDY)
    assert problems == []
    study.components[0].select.study = "Study"
    plan = plan_deposit(facility_config, ledger, study, DepositSelection(project="DEMO"))
    items = {i.name: i for i in gather_items(facility_config, ledger, plan, target, include_reports=False)}
    folder = FOLDER.as_posix()
    for name, companions in ACQUISITIONS.items():
        assert items[f"{folder}/{name}"].kind == "raw"
        for rel, data in companions.items():
            item = items[f"{folder}/{rel}"]
            assert (item.kind, item.uid, item.size) == ("companion", uids[name], len(data)), item
    for name in ACQUISITIONS:  # the RO-Crate beside the raw file stays metadata
        assert items[f"{folder}/{name}.{CRATE_NAME}"].kind == "metadata"
