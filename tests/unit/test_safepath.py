"""Hostile names: nothing escapes the storage tiers, and what cannot be made safe is quarantined with the reason."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from microfair import ingest
from microfair.collect import collect, scan
from microfair.deposit.builder import _remote_path
from microfair.irods.register import dataset_collection
from microfair.quarantine import quarantine_path
from microfair.safepath import (MAX_COMPONENT_BYTES, UnsafeName, check_relpath, contained, safe_component, safe_join,
                                safe_relpath)

DOT_DOT_LOOKALIKES = ["..", "‥", "．．", "..-", "-..", " .. ", "-..-", ". .", "...", "\u2024\u2024", "．.", "..\u200b"]


@pytest.mark.parametrize("name", DOT_DOT_LOOKALIKES)
def test_dot_dot_and_its_look_alikes_are_refused_after_folding(name):
    with pytest.raises(UnsafeName, match="not a usable"):
        safe_component(name)


@pytest.mark.parametrize("name", ["", ".", " ", "-", "\x00", "\n", "\u202e", "／", "/", "\\", "\t\r"])
def test_names_that_fold_to_nothing_are_refused(name):
    with pytest.raises(UnsafeName):
        safe_component(name)


@pytest.mark.parametrize("name, safe", [
    ("／etc／passwd", "etc-passwd"),
    ("/etc/passwd", "etc-passwd"),
    ("..\\..\\windows", "_..-..-windows"),  # one harmless component
    ("a\x00b", "a-b"),
    ("line\nbreak.tif", "line-break.tif"),
    ("\u202egnp.exe.tif", "gnp.exe.tif"),
    ("<script>alert(1)</script>", "script-alert-1-script"),
    ("Étude été", "Etude-ete"),
    ("trailing. . .", "trailing"),
    ("trailing  ", "trailing"),
    (".hidden", "_.hidden"),
    ("a..b", "a..b"),
    ("2024-05-02_TNT_MicroAlgue_ALebon_Controle_RAW_v01.czi", "2024-05-02_TNT_MicroAlgue_ALebon_Controle_RAW_v01.czi"),
])
def test_components_are_folded_then_checked(name, safe):
    assert safe_component(name) == safe
    assert safe_component(safe) == safe  # idempotent: a safe name stays what it is
    assert "/" not in safe and "\x00" not in safe and safe not in (".", "..")


@pytest.mark.parametrize("name", ["CON", "con", "NUL", "nul.txt", "COM1", "com9.tif", "LPT1", "AUX", "PRN.czi"])
def test_windows_reserved_names_are_refused(name):
    with pytest.raises(UnsafeName, match="reserved"):
        safe_component(name)


def test_components_are_bounded_so_temporary_names_fit_in_255_bytes():
    ok = "a" * MAX_COMPONENT_BYTES
    assert safe_component(ok) == ok
    assert len(f".{ok}.partial-mf-0123456789abcdef".encode()) <= 255
    with pytest.raises(UnsafeName, match="201 bytes"):
        safe_component("a" * 201)
    with pytest.raises(UnsafeName, match="bytes long"):
        safe_component("b" * 255)


def test_join_proves_containment_on_resolved_paths(tmp_path):
    tier = tmp_path / "raw"
    (tier / "P").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    assert safe_join(tier, "P", "S", "f.tif") == tier / "P/S/f.tif"
    (tier / "link").symlink_to(outside)  # a symlink inside the tier leads out of it
    with pytest.raises(UnsafeName, match="outside"):
        safe_join(tier, "link", "f.tif")
    with pytest.raises(UnsafeName, match="outside"):
        contained(tier, tier / ".." / "outside")  # a path built elsewhere, checked here
    with pytest.raises(UnsafeName):
        contained(tier, tier)  # the tier itself is no place for a file
    with pytest.raises(UnsafeName, match="longer than"):
        safe_join(tier, *(["d" * 100] * 30))  # deep trees are bounded too


def test_relative_paths_for_file_lists():
    assert safe_relpath("P", "Étude", "f.tif") == "P/Etude/f.tif"
    with pytest.raises(UnsafeName):
        safe_relpath("P", "‥", "f.tif")
    for bad in ("/abs/f", "a/../b", "a//b", "./a", "a\\b", ""):
        with pytest.raises(UnsafeName):
            check_relpath(bad)


# -- collect level ----------------------------------------------------------------------------------------------
GOOD = "2024-05-02_TNT_MicroAlgue_ALebon_Controle_RAW_v01.czi"
HOSTILE = [
    "‥/‥/‥/x/f.tif",
    "．．/．．/x/f.tif",
    "..-/a/b/f.tif",
    "-../a/b/f.tif",
    " .. /a/b/f.tif",
    "P/S/E/‥",  # the file name itself
    "／etc／passwd/S/E/f.tif",
    "P/S/E/line\nbreak.tif",
    "P/S/E/\u202efdp.exe.tif",
    "<script>alert(1)<script>/S/E/f.tif",
    "CON/S/E/f.tif",
    "P/NUL/E/f.tif",
    "P/S/COM1/f.tif",
    "P. . /S . /E.../f.tif.",
    "P/S/E/" + "n" * 251 + ".tif",  # 255 bytes: the temporary name could not exist
    "/".join(["deep" + "e" * 56] * 45) + "/f.tif",  # a deep tree
    "escape/S/E/f.tif",  # raw/escape is a symlink out of the tier (planted below)
    f"TNT/Algae/exp1/{GOOD}",
]


def _files_under(root: Path) -> set[Path]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for n in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            out.add(Path(dirpath) / n)
    return out


def test_hostile_landing_names_never_escape_and_are_quarantined_with_a_reason(facility_config, ledger, tmp_path):
    zone = facility_config.landing_zones[0].path
    outside = tmp_path / "outside"
    outside.mkdir()
    (facility_config.storage.raw / "escape").symlink_to(outside, target_is_directory=True)
    old = time.time() - 3600
    for rel in HOSTILE:
        p = zone / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rel.encode())
        os.utime(p, (old, old))
    before = _files_under(tmp_path)

    ready = scan(facility_config, ledger).ready
    assert len(ready) == len(HOSTILE)
    outcomes = {a.relpath: collect(facility_config, ledger, a) for a in ready}

    tiers = [Path(p).resolve() for p in (facility_config.storage.raw, facility_config.storage.quarantine)]
    db = Path(facility_config.ledger.url.split(":///", 1)[1])
    created = {p for p in _files_under(tmp_path) - before if not p.name.startswith(db.name)}
    assert created
    for p in created:
        real = p.resolve() if not p.is_symlink() else p.parent.resolve() / p.name
        assert any(real.is_relative_to(t) for t in tiers), f"written outside the storage tiers: {p}"
    assert list(outside.iterdir()) == []
    assert not (tmp_path / "x").exists() and not Path("/x/f.tif").exists()

    for ds in ledger.datasets():
        assert ds.state in ("collected", "quarantined"), (ds.source_path, ds.state)
        assert ds.project not in ("..", ".", "")
        if ds.state == "quarantined":
            assert ds.reason and ds.raw_path is None
            [q] = ledger.files(ds.uid, "quarantine")
            assert Path(q.path).resolve().is_relative_to(tiers[1])
            assert Path(q.path).read_bytes() == Path(ds.source_path).read_bytes()  # kept, nothing lost
        else:
            raw = Path(ds.raw_path)
            assert raw.resolve().is_relative_to(tiers[0]) and ".." not in raw.parts
            for built in (ingest.report_dir(facility_config, ds), ingest.zarr_path(facility_config, ds)):
                tier = facility_config.storage.reports if "report" in str(built) else facility_config.storage.converted
                assert built.resolve().is_relative_to(tier.resolve()) and ".." not in built.parts
            coll = dataset_collection(facility_config, ds, "tempZone")
            assert not {"..", ".", ""} & set(coll.split("/")[1:])
            remote = _remote_path(raw, facility_config.storage.raw, ds)
            assert check_relpath(remote) == remote

    by_rel = {Path(d.source_path).relative_to(zone).as_posix(): d for d in ledger.datasets()}
    for rel in HOSTILE[:6] + ["CON/S/E/f.tif", "P/NUL/E/f.tif", "P/S/COM1/f.tif", "escape/S/E/f.tif"]:
        assert outcomes[rel] == "quarantined" and "unsafe name" in by_rel[rel].reason, rel
    assert "outside" in by_rel["escape/S/E/f.tif"].reason
    assert "bytes long" in by_rel[HOSTILE[14]].reason and "longer than" in by_rel[HOSTILE[15]].reason
    assert Path(by_rel["／etc／passwd/S/E/f.tif"].raw_path).relative_to(facility_config.storage.raw).parts[0] == \
        "etc-passwd"
    assert Path(by_rel["P. . /S . /E.../f.tif."].raw_path).relative_to(facility_config.storage.raw).as_posix() == \
        "P/S/E/f.tif"
    assert by_rel[f"TNT/Algae/exp1/{GOOD}"].state == "collected"
    assert scan(facility_config, ledger).ready == []  # quarantined names are not retried


def test_irods_collection_of_a_hostile_ledger_value_stays_inside_the_zone(facility_config):
    ds = SimpleNamespace(project="..", study="‥", experiment="a/../../b")
    coll = dataset_collection(facility_config, ds, "tempZone")
    parts = coll.split("/")
    assert ".." not in parts and parts[:3] == ["", "tempZone", "home"]
    assert parts[-3:] == ["no-project", "no-study", "a-..-..-b"]


def test_quarantine_path_falls_back_for_unsafe_names(facility_config):
    q = facility_config.storage.quarantine
    assert quarantine_path(facility_config, "scope", "P/S/f.tif", "mf-1") == q / "scope/P/S/f.tif"
    assert quarantine_path(facility_config, "scope", "‥/‥/f.tif", "mf-1") == q / "scope/_unsafe-names/mf-1/file"
    assert quarantine_path(facility_config, "scope", "/etc/passwd", "mf-1") == q / "scope/_unsafe-names/mf-1/file"


def test_a_name_that_is_not_utf8_waits_with_a_reason_and_is_never_stored(facility_config, ledger):
    zone = facility_config.landing_zones[0].path
    bad = os.path.join(os.fsencode(zone), b"caf\xe9.tif")  # Latin-1 from an old acquisition PC
    with open(bad, "wb") as f:
        f.write(b"pixels")
    res = scan(facility_config, ledger)
    assert res.ready == [] and "not valid UTF-8" in res.waiting[0].why
    res.waiting[0].source.encode("utf-8")  # printable in a task log
    assert ledger.datasets() == []


def test_bia_file_list_paths_are_relative_and_contained(tmp_path):
    raw_root = tmp_path / "raw"
    (raw_root / "P/S/E").mkdir(parents=True)
    inside = raw_root / "P/S/E/f.tif"
    ds = SimpleNamespace(project="P", study="Étude", experiment="E")
    assert _remote_path(inside, raw_root, ds) == "P/S/E/f.tif"
    # a raw path that leads out of the raw tree is never used as it is
    assert _remote_path(raw_root / "../elsewhere/f.tif", raw_root, ds) == "P/Etude/E/f.tif"
    with pytest.raises(UnsafeName):
        _remote_path(tmp_path / "elsewhere/f.tif", raw_root, SimpleNamespace(project="..", study="S", experiment="E"))
