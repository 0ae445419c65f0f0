"""The three classes of unreadable files, and that only a damaged one is called corrupt.

Bad files are made on the fly in tmp_path from the real samples (never copied into the repo):
truncated at half, a broken HDF5 superblock, an OIB renamed .oif, an OIF without its folder, an
intact LIF whose axes we cannot map, a format nobody reads. Then the same verdicts through the
validate stage: the class reaches the ledger reason, the quarantine ``.reason.json`` and the
dashboard, and nothing is published.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import liffile
import numpy as np
import oiffile
import pytest

from microfair.collect import collect, scan
from microfair.imaging import UnreadableImage, open_image, plugins
from microfair.imaging import reading
from microfair.imaging.errors import DAMAGED, NO_READER, UNSUPPORTED_LAYOUT
from tests.support.lif_writer import LifImageSpec, write_lif

OIB = "olympus_fv1000_3ch.oib"
IMS = "imaris_ptk2_cell.ims"


def _refused(path: Path) -> UnreadableImage:
    with pytest.raises(UnreadableImage) as info:
        open_image(path)
    return info.value


def _half(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])
    return dst


@pytest.mark.parametrize("name", [OIB, IMS])
def test_a_file_truncated_at_half_is_damaged(testdata: Path, tmp_path: Path, name: str) -> None:
    err = _refused(_half(testdata / name, tmp_path / name))
    assert err.kind == DAMAGED
    assert "damaged" in str(err) and "truncated or corrupt" in err.reason


@pytest.mark.parametrize("cut", [1, 13_394])
def test_an_oib_missing_its_last_bytes_is_damaged(testdata: Path, tmp_path: Path, cut: int) -> None:
    """oiffile reads every plane of an OIB cut by 1 % (the lost sectors hold no pixels); it is damaged all the same."""
    data = (testdata / OIB).read_bytes()
    (tmp_path / OIB).write_bytes(data[:-cut])
    err = _refused(tmp_path / OIB)
    assert err.kind == DAMAGED and f"the file is {len(data) - cut} bytes" in err.reason


@pytest.mark.parametrize("where", ["signature", "addresses"])
def test_an_imaris_file_with_a_broken_hdf5_superblock_is_damaged(testdata: Path, tmp_path: Path, where) -> None:
    data = bytearray((testdata / IMS).read_bytes())
    if where == "signature":
        data[0:8] = b"\0" * 8  # the HDF5 format signature
    else:
        data[8:48] = b"\xff" * 40  # versions, sizes and base / end-of-file addresses after the signature
    bad = tmp_path / "broken.ims"
    bad.write_bytes(bytes(data))
    err = _refused(bad)
    assert err.kind == DAMAGED and "microfair-ims" in err.reason
    if where == "signature":
        assert "bad magic" in err.reason


def test_an_oib_renamed_oif_is_an_unsupported_layout_that_says_what_it_is(testdata: Path, tmp_path: Path) -> None:
    """The bytes are an intact OIB: calling it corrupt would be false, and no install helps (not no_reader).
    Reading it as an OIB would publish a .oif whose content every extension-led reader misreads."""
    renamed = tmp_path / "cells.oif"
    renamed.write_bytes((testdata / OIB).read_bytes())
    err = _refused(renamed)
    assert err.kind == UNSUPPORTED_LAYOUT
    assert "content is an Olympus OIB" in err.reason and "rename it to .oib" in err.reason
    assert "corrupt" not in str(err)
    (tmp_path / "cells.oib").write_bytes(renamed.read_bytes())  # the advice works
    assert open_image(tmp_path / "cells.oib").shape == (1, 3, 1, 256, 256)


@pytest.mark.parametrize(("content", "name", "reader"), [(IMS, "cell.oib", "microfair-ims"),
                                                         (OIB, "cell.ims", "microfair-oib")])
def test_an_intact_file_under_another_format_s_name_is_misnamed_not_corrupt(
        testdata: Path, tmp_path: Path, content: str, name: str, reader: str) -> None:
    (tmp_path / name).write_bytes((testdata / content).read_bytes())
    err = _refused(tmp_path / name)
    assert err.kind == UNSUPPORTED_LAYOUT and "corrupt" not in str(err)
    assert f"content is what {reader} reads" in err.reason and f"rename it to {Path(content).suffix}" in err.reason


def test_a_truncated_file_under_another_format_s_name_stays_damaged(testdata: Path, tmp_path: Path) -> None:
    err = _refused(_half(testdata / IMS, tmp_path / "cell.oib"))
    assert err.kind == DAMAGED  # microfair-ims recognises the HDF5 signature but cannot read the rest


def test_an_oif_without_its_companion_folder_is_incomplete(testdata: Path, tmp_path: Path) -> None:
    with oiffile.OibFileSystem(testdata / OIB) as fs:
        fs.saveas_oif(str(tmp_path / "full"))
    oif = next((tmp_path / "full").glob("*.oif"))
    lonely = tmp_path / "lonely.oif"
    lonely.write_bytes(oif.read_bytes())
    err = _refused(lonely)
    assert err.kind == DAMAGED
    assert "missing companion files" in err.reason and "lonely.oif.files" in err.reason
    assert "corrupt" not in str(err) and err.reason.startswith("incomplete OIF file")


def test_random_bytes_named_oib_are_damaged(tmp_path: Path) -> None:
    noise = tmp_path / "noise.oib"
    noise.write_bytes(os.urandom(40_000))
    err = _refused(noise)
    assert err.kind == DAMAGED and "bad magic" in err.reason


def test_an_intact_lif_with_axes_we_cannot_map_is_not_called_corrupt(tmp_path: Path) -> None:
    """Time, z and a rotation axis (A): no free bioio axis holds A, but liffile reads every pixel,
    so the verdict names the axes, not damage (this was "truncated or corrupt LIF file")."""
    data = np.arange(2 * 2 * 2 * 8 * 8, dtype=np.uint8).reshape(2, 2, 2, 8, 8)
    path = write_lif(tmp_path / "rotation.lif", [LifImageSpec("turns", data, ("T", "Z", "A", "Y", "X"))])
    with liffile.LifFile(path) as lif:
        np.testing.assert_array_equal(lif.images[0].asarray(), data)  # intact
    err = _refused(path)
    assert err.kind == UNSUPPORTED_LAYOUT
    assert "A (rotation)" in err.reason and "corrupt" not in str(err)


def test_a_format_nobody_reads_names_what_to_install(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MICROFAIR_BIOFORMATS_JAR", raising=False)
    slide = tmp_path / "slide.mrxs"
    slide.write_bytes(b"MIRAX" + os.urandom(1000))
    err = _refused(slide)
    assert err.kind == NO_READER and "make bioformats" in err.reason and "corrupt" not in str(err)


@pytest.fixture
def without_ims_reader(monkeypatch):
    """The facade as if h5py were missing: the IMS sub-plugin fails to import."""
    modules = tuple(m for m in plugins.SUB_PLUGINS if not m.endswith("ims_plugin"))
    monkeypatch.setattr(plugins, "SUB_PLUGINS", (*modules, "microfair.imaging.ims_plugin_needs_h5py"))
    for cached in (plugins._load, reading.installed_plugins):
        cached.cache_clear()
    yield
    monkeypatch.undo()
    for cached in (plugins._load, reading.installed_plugins):
        cached.cache_clear()


def test_a_reader_that_failed_to_load_is_named(testdata: Path, tmp_path: Path, monkeypatch,
                                               without_ims_reader) -> None:
    monkeypatch.delenv("MICROFAIR_BIOFORMATS_JAR", raising=False)
    err = _refused(testdata / IMS)
    assert err.kind == NO_READER
    assert "microfair-ims" in err.reason and "ims_plugin_needs_h5py" in err.reason


# ---- through the validate stage: ledger, quarantine .reason.json, dashboard; nothing published -----------

def _collect_one(cfg, ledger, name: str, content: bytes) -> str:
    src = cfg.landing_zones[0].path / "DEMO" / name
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(content)
    old = time.time() - 3600
    os.utime(src, (old, old))
    (acq,) = [a for a in scan(cfg, ledger).ready if Path(a.relpath).name == name]
    collect(cfg, ledger, acq)
    return acq.uid


@pytest.mark.parametrize(("name", "make", "kind"), [
    ("2024-05-02_DEMO_Cells_ALebon_Control_RAW_v01.oib", "half", DAMAGED),
    ("2024-05-02_DEMO_Cells_ALebon_Control_RAW_v02.ims", "half", DAMAGED),
    ("2024-05-02_DEMO_Cells_ALebon_Control_RAW_v03.oif", "renamed", UNSUPPORTED_LAYOUT),
])
def test_validate_quarantines_with_the_class_and_publishes_nothing(
        facility_config, ledger, testdata: Path, name: str, make: str, kind: str) -> None:
    from microfair.ingest import convert_dataset, validate_dataset

    sample = (testdata / (IMS if name.endswith(".ims") else OIB)).read_bytes()
    content = sample[: len(sample) // 2] if make == "half" else sample
    uid = _collect_one(facility_config, ledger, name, content)
    assert validate_dataset(facility_config, ledger, uid) == "quarantined"
    ds = ledger.require(uid)
    assert ds.state == "quarantined" and ds.raw_path is None
    word = {DAMAGED: "damaged", UNSUPPORTED_LAYOUT: "unsupported layout"}[kind]
    assert f"{word} —" in ds.reason and (("corrupt" in ds.reason) == (kind == DAMAGED))
    note = ledger.get_record(uid, "quarantine")
    assert note["error_class"] == kind
    (reason_file,) = (facility_config.storage.quarantine).rglob("*.reason.json")
    assert json.loads(reason_file.read_text())["error_class"] == kind
    kept = reason_file.with_name(reason_file.name.removesuffix(".reason.json"))
    assert kept.read_bytes() == content  # nothing lost
    with pytest.raises(RuntimeError):
        convert_dataset(facility_config, ledger, uid)  # a quarantined dataset is never converted
    storage = facility_config.storage
    assert not any(p.is_file() for p in storage.raw.rglob("*"))  # moved out of the raw tree
    assert not storage.converted.exists() or not any(storage.converted.rglob("*"))  # no OME-Zarr


def test_the_dashboard_shows_the_class_as_a_word(facility_config, ledger, testdata: Path, monkeypatch) -> None:
    pytest.importorskip("fastapi.testclient")
    from microfair.ingest import validate_dataset
    from tests.support.dashboard import dashboard_client

    sample = (testdata / OIB).read_bytes()
    uid = _collect_one(facility_config, ledger, "2024-05-02_DEMO_Cells_ALebon_Control_RAW_v04.oif", sample)
    validate_dataset(facility_config, ledger, uid)
    with dashboard_client(facility_config, ledger, monkeypatch) as client:
        page = client.get(f"/datasets/{uid}").text
    assert "unsupported layout —" in page and "rename it to .oib" in page and "corrupt" not in page
