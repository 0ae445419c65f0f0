"""Whole-slide (SVS/NDPI), cellSens VSI and DeltaVision DV readers: discovery, pixels, pyramid, bad input.

Pixels are compared with arrays we wrote ourselves (synthetic SVS with tifffile, DV with mrc) or with
an independent decode of the file's tiles (VSI: the ETS tile table parsed here, JPEG 2000 decoded with
imagecodecs), never with the reader under test.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from bioio import BioImage
from ome_types import from_xml, to_xml

from microfair.imaging import UnreadableImage, open_image, reader_identity
from microfair.imaging import wsi_plugin

SVS = "aperio_cmu1_small_region.svs"
VSI = "olympus_vsi/vsi-ets-test-jpg2k.vsi"


def write_svs(path: Path, seed: int = 0) -> np.ndarray:
    """A small Aperio-style SVS: tiled baseline, thumbnail, half-size level, label, macro. Returns level 0."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (512, 768, 3), dtype=np.uint8)
    head = "Aperio Image Library v11.2.1\r\n"
    with tifffile.TiffWriter(path) as w:
        w.write(base, tile=(128, 128), photometric="rgb", compression="zlib", metadata=None,
                description=head + "768x512 [0,0 768x512] (128x128) RGB|AppMag = 40|MPP = 0.2520")
        w.write(base[::8, ::8].copy(), photometric="rgb", description=head + "thumbnail", metadata=None)
        w.write(base[::2, ::2].copy(), tile=(128, 128), photometric="rgb", compression="zlib",
                description=head + "384x256 level", metadata=None)
        w.write(base[:64, :100].copy(), photometric="rgb", description=head + "label", metadata=None, subfiletype=1)
        w.write(base[:80, :200].copy(), photometric="rgb", description=head + "macro", metadata=None, subfiletype=9)
    return base


def test_svs_is_found_by_its_extension_and_read_at_full_resolution(tmp_path: Path) -> None:
    path = tmp_path / "slide.svs"
    base = write_svs(path)
    img = open_image(path)
    assert reader_identity(img)[0] == "microfair-wsi"
    assert img.scenes == ("Baseline",)  # thumbnail, label and macro are not scenes
    assert img.dims.order == "TCZYXS" and img.dims.S == 3 and (img.dims.Y, img.dims.X) == (512, 768)
    np.testing.assert_array_equal(img.dask_data.compute()[0, 0, 0], base)
    np.testing.assert_array_equal(img.get_image_data("YXS"), base)
    assert img.physical_pixel_sizes.X == pytest.approx(0.252)


def test_svs_lazy_chunks_are_whole_tiles_of_bounded_size(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "slide.svs"
    base = write_svs(path)
    monkeypatch.setattr(wsi_plugin, "CHUNK_EDGE", 300)  # 2 tiles of 128
    lazy = BioImage(path, reader=wsi_plugin.Reader).dask_data
    assert lazy.chunks[3] == (256, 256) and lazy.chunks[4] == (256, 256, 256)
    np.testing.assert_array_equal(lazy.compute()[0, 0, 0], base)


def test_svs_pyramid_and_associated_images_are_recorded(tmp_path: Path) -> None:
    path = tmp_path / "slide.svs"
    write_svs(path)
    img = BioImage(path, reader=wsi_plugin.Reader)
    assert img.reader.source_pyramid == [
        {"level": 0, "shape": [512, 768, 3], "downsample": 1.0},
        {"level": 1, "shape": [256, 384, 3], "downsample": 2.0},
    ]
    assert img.reader.associated_images == ["Thumbnail", "Label", "Macro"]
    ome = from_xml(to_xml(img.ome_metadata))
    (ann,) = ome.structured_annotations.map_annotations
    assert ann.namespace == wsi_plugin.PYRAMID_NAMESPACE
    values = {m.k: m.value for m in ann.value.ms}
    assert values["level 1"] == "shape [256, 384, 3] downsample 2"
    assert ome.instruments[0].objectives[0].nominal_magnification == 40


def test_real_svs_level0_matches_tifffile(testdata: Path) -> None:
    img = open_image(testdata / SVS)
    assert reader_identity(img)[0] == "microfair-wsi"
    assert (img.dims.Y, img.dims.X, img.dims.S) == (2967, 2220, 3)
    assert img.physical_pixel_sizes.X == pytest.approx(0.499)
    assert img.reader.source_pyramid == [{"level": 0, "shape": [2967, 2220, 3], "downsample": 1.0}]
    np.testing.assert_array_equal(img.dask_data.compute()[0, 0, 0], tifffile.imread(testdata / SVS, series=0))


def test_plain_tiff_named_svs_is_not_a_slide(tmp_path: Path) -> None:
    path = tmp_path / "not_a_slide.svs"
    tifffile.imwrite(path, np.zeros((16, 16), np.uint8))
    with pytest.raises(UnreadableImage) as err:
        open_image(path)
    assert "whole-slide" in err.value.reason


def _truncated(src: Path, dest: Path) -> Path:
    data = src.read_bytes()
    dest.write_bytes(data[: len(data) // 2])
    return dest


def test_svs_truncated_at_half_is_damaged(testdata: Path, tmp_path: Path) -> None:
    path = _truncated(testdata / SVS, tmp_path / "cut.svs")
    with pytest.raises(UnreadableImage) as err:
        open_image(path)
    assert "truncated or corrupt" in err.value.reason


# --- cellSens VSI: the .vsi and its _<stem>_ folder are one acquisition --------------------------------------

def _land_vsi(testdata: Path, zone: Path, *, with_folder: bool = True) -> Path:
    src = testdata / VSI
    dest = zone / "DEMO" / "Cells" / "e1" / src.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    if with_folder:
        shutil.copytree(src.with_name(f"_{src.stem}_"), dest.with_name(f"_{src.stem}_"))
    return dest


def test_vsi_and_its_ets_folder_are_collected_as_one_acquisition(testdata, facility_config, ledger) -> None:
    from microfair.collect import collect, scan

    landed = _land_vsi(testdata, facility_config.landing_zones[0].path)
    ready = scan(facility_config, ledger).ready
    assert [Path(a.source).name for a in ready] == [landed.name]  # the .ets is not an acquisition of its own
    assert collect(facility_config, ledger, ready[0]) == "collected"
    raw = Path(ledger.get(ready[0].uid).raw_path)
    ets = raw.with_name(f"_{raw.stem}_") / "stack1" / "frame_t_0.ets"
    assert ets.read_bytes() == (landed.with_name(f"_{landed.stem}_") / "stack1" / "frame_t_0.ets").read_bytes()
    files = {f.role: f for f in ledger.files(ready[0].uid)}
    assert Path(files["companion"].path) == ets and files["companion"].size_bytes == ets.stat().st_size
    assert not list(raw.parent.glob(".*partial*"))
    assert open_image(raw).dims.C == 2  # the raw copy reads on its own
    assert scan(facility_config, ledger).ready == []  # nothing left to offer


def test_vsi_waits_while_its_companion_folder_changes(testdata, facility_config, ledger) -> None:
    import os
    import time

    from microfair.collect import scan

    zone = facility_config.landing_zones[0]
    zone.stability_seconds = 30.0
    landed = _land_vsi(testdata, zone.path)
    old = time.time() - 3600
    for p in [landed, *landed.with_name(f"_{landed.stem}_").rglob("*")]:
        os.utime(p, (old, old))
    t0 = time.time()
    assert scan(facility_config, ledger, now=t0).ready == []  # first look
    ets = next(landed.with_name(f"_{landed.stem}_").rglob("*.ets"))
    os.utime(ets, (t0 + 5, t0 + 5))  # cellSens still writing pixels after the first look
    second = scan(facility_config, ledger, now=t0 + 40)
    assert second.ready == [] and "companion files changed" in second.waiting[0].why
    assert [Path(a.source) for a in scan(facility_config, ledger, now=t0 + 80).ready] == [landed]


def test_vsi_without_its_folder_says_missing_companion_files_and_names_it(testdata, tmp_path: Path) -> None:
    lonely = tmp_path / "lonely.vsi"
    shutil.copyfile(testdata / VSI, lonely)
    with pytest.raises(UnreadableImage) as err:
        open_image(lonely)
    assert "missing companion files" in err.value.reason and "'_lonely_/'" in err.value.reason
    assert getattr(err.value, "kind", "damaged") == "damaged"  # incomplete: re-copy from the instrument PC
    (tmp_path / "_lonely_" / "stack1").mkdir(parents=True)  # the folder, but no .ets in it
    with pytest.raises(UnreadableImage, match="missing companion files"):
        open_image(lonely)


def test_vsi_planes_match_an_independent_decode_of_the_ets_tiles(testdata) -> None:
    from tests.support.ets import decode_tile, read_tiles

    img = open_image(testdata / VSI)
    assert reader_identity(img)[0] == "microfair-vsi"
    ets = testdata / "olympus_vsi" / "_vsi-ets-test-jpg2k_" / "stack1" / "frame_t_0.ets"
    header, tiles = read_tiles(ets)
    by_cz = {(t.coords[4], t.coords[3]): t for t in tiles if t.coords[-1] == 0}
    lazy = img.dask_data
    for c, z in [(0, 0), (0, 4), (1, 10)]:  # (0, 0) is all zero in the file itself, not a decode problem
        np.testing.assert_array_equal(lazy[0, c, z].compute(), decode_tile(ets, header, by_cz[c, z]))
    assert img.physical_pixel_sizes.X == pytest.approx(0.10833, rel=1e-4)
    channels = img.ome_metadata.images[0].pixels.channels  # bioio-vsi parses them; we carry them to OME
    assert [(c.name, c.emission_wavelength) for c in channels] == [("C405", 455.0), ("C488", 518.0)]


def test_vsi_truncated_at_half_is_damaged(testdata, tmp_path: Path) -> None:
    path = _truncated(testdata / VSI, tmp_path / "cut.vsi")
    shutil.copytree(testdata / "olympus_vsi" / "_vsi-ets-test-jpg2k_", tmp_path / "_cut_")
    with pytest.raises(UnreadableImage) as err:
        open_image(path)
    assert "truncated or corrupt" in err.value.reason


# --- DeltaVision DV, written on the fly with mrc (the library bioio-dv reads with) ---------------------------

def write_dv(path: Path) -> np.ndarray:
    import mrc

    data = np.random.default_rng(3).integers(0, 4000, (2, 5, 32, 48), dtype=np.uint16)  # C, Z, Y, X
    mrc.save(data, str(path), zAxisOrder="wz", metadata={"dx": 0.1, "dy": 0.1, "dz": 0.3, "wave0": 525,
                                                         "wave1": 610})
    return data


def test_dv_two_channels_read_with_wavelengths(tmp_path: Path) -> None:
    from microfair.metadata import extract_metadata

    path = tmp_path / "cells.dv"
    data = write_dv(path)
    img = open_image(path)
    assert reader_identity(img)[0] == "microfair-dv"
    assert list(img.channel_names) == ["525 nm", "610 nm"]
    np.testing.assert_array_equal(img.dask_data.compute()[0], data)
    assert img.physical_pixel_sizes.Z == pytest.approx(0.3)
    (scene,) = extract_metadata(img).scenes
    assert [c.emission_nm for c in scene.channels] == [525.0, 610.0]


def test_dv_truncated_at_half_is_damaged(tmp_path: Path) -> None:
    full = tmp_path / "full.dv"
    write_dv(full)
    with pytest.raises(UnreadableImage) as err:
        open_image(_truncated(full, tmp_path / "cut.dv"))
    assert "truncated or corrupt" in err.value.reason


def test_companion_rules_come_from_the_plugins_not_the_stages(tmp_path: Path) -> None:
    from microfair.companions import expected_companions

    assert expected_companions(tmp_path / "a.vsi") == [tmp_path / "_a_"]
    assert expected_companions(tmp_path / "scan.oif") == [tmp_path / "scan.oif.files"]
    assert expected_companions(tmp_path / "scan.oib") == []
    assert expected_companions(tmp_path / "cells.czi") == []


def test_plugins_declare_the_companion_rules_the_landing_scan_uses() -> None:
    from microfair.companions import KNOWN_COMPANIONS
    from microfair.imaging.plugins import sub_plugins

    declared = {p.name: p for p in sub_plugins() if hasattr(p.metadata, "companion_paths")}
    assert {"microfair-vsi", "microfair-oib"} <= set(declared)
    ours = {name for name in KNOWN_COMPANIONS if name.startswith("microfair-")}
    assert ours == set(declared)  # no plugin of ours without its entry, no entry without its plugin
    for name, plugin in declared.items():
        extensions, rule = KNOWN_COMPANIONS[name]
        assert plugin.metadata.companion_paths is rule and set(extensions) <= set(plugin.extensions)


def test_the_landing_scan_imports_no_reader() -> None:
    import subprocess
    import sys

    code = ("import sys; from pathlib import Path; import microfair.landing; from microfair.companions import "
            "companion_roots; companion_roots([Path('a.vsi'), Path('b.czi')]); print('bioio' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_oif_folder_is_collected_with_its_oif(facility_config, ledger) -> None:
    from microfair.collect import collect, scan

    experiment = facility_config.landing_zones[0].path / "DEMO" / "Cells" / "e1"
    planes = experiment / "scan.oif.files"
    planes.mkdir(parents=True)
    (experiment / "scan.oif").write_text("[FileInformation]\n")
    for i in range(3):
        (planes / f"s_C00{i + 1}.tif").write_bytes(bytes([i]) * 100)
    ready = scan(facility_config, ledger).ready
    assert [Path(a.source).name for a in ready] == ["scan.oif"]
    assert collect(facility_config, ledger, ready[0]) == "collected"
    raw = Path(ledger.get(ready[0].uid).raw_path)
    assert sorted(p.name for p in Path(f"{raw}.files").iterdir()) == ["s_C001.tif", "s_C002.tif", "s_C003.tif"]
    assert len(ledger.files(ready[0].uid, "companion")) == 3


def test_ndpi_level0_pyramid_and_macro(tmp_path: Path) -> None:
    from tests.support.ndpi import write_ndpi

    rng = np.random.default_rng(7)
    base = rng.integers(0, 255, (256, 384, 3), dtype=np.uint8)
    path = tmp_path / "slide.ndpi"
    write_ndpi(path, [base, base[::2, ::2].copy()], magnification=40.0, um_per_pixel=0.23,
               macro=rng.integers(0, 255, (80, 200, 3), dtype=np.uint8))
    img = open_image(path)
    assert reader_identity(img)[0] == "microfair-wsi" and img.scenes == ("Baseline",)
    np.testing.assert_array_equal(img.dask_data.compute()[0, 0, 0], base)
    assert img.physical_pixel_sizes.X == pytest.approx(0.23, rel=1e-6)  # from the resolution tags, in cm
    assert [lvl["downsample"] for lvl in img.reader.source_pyramid] == [1.0, 2.0]
    assert img.reader.associated_images == ["Macro"]
    instrument = img.ome_metadata.instruments[0]
    assert instrument.microscope.manufacturer == "Hamamatsu"
    assert instrument.objectives[0].nominal_magnification == 40.0
    with pytest.raises(UnreadableImage) as err:
        open_image(_truncated(path, tmp_path / "cut.ndpi"))
    assert "truncated or corrupt" in err.value.reason


def test_a_companion_folder_left_after_its_main_file_went_is_not_offered(testdata, facility_config, ledger) -> None:
    from microfair.collect import collect, scan

    landed = _land_vsi(testdata, facility_config.landing_zones[0].path)
    (acq,) = scan(facility_config, ledger).ready
    assert collect(facility_config, ledger, acq) == "collected"
    landed.unlink()  # retention frees the main file; the .ets folder is still in the landing zone
    assert scan(facility_config, ledger).ready == []


def test_collect_again_after_a_crash_adopts_the_published_companion_folder(testdata, facility_config, ledger,
                                                                          monkeypatch) -> None:
    import microfair.collect as collect_mod

    landed = _land_vsi(testdata, facility_config.landing_zones[0].path)
    (acq,) = collect_mod.scan(facility_config, ledger).ready
    real_copy = collect_mod.copy_verified

    def crash_on_main(source, dest, **kw):
        if Path(source) == landed:
            raise KeyboardInterrupt("worker killed after the companion folder was published")
        return real_copy(source, dest, **kw)

    monkeypatch.setattr(collect_mod, "copy_verified", crash_on_main)
    with pytest.raises(KeyboardInterrupt):
        collect_mod.collect(facility_config, ledger, acq)
    monkeypatch.setattr(collect_mod, "copy_verified", real_copy)
    assert collect_mod.collect(facility_config, ledger, acq) == "collected"
    raw = Path(ledger.get(acq.uid).raw_path)
    assert open_image(raw).dims.Z == 11
    assert len(ledger.files(acq.uid, "companion")) == 1


def test_a_strangers_folder_at_the_companion_name_is_a_collision(testdata, facility_config, ledger) -> None:
    from microfair.collect import collect, destination, scan

    landed = _land_vsi(testdata, facility_config.landing_zones[0].path)
    (acq,) = scan(facility_config, ledger).ready
    stranger = destination(facility_config, acq).with_name(f"_{landed.stem}_") / "stack1" / "frame_t_0.ets"
    stranger.parent.mkdir(parents=True)
    stranger.write_bytes(b"someone else's pixels")
    assert collect(facility_config, ledger, acq) == "quarantined"
    assert "name collision" in ledger.get(acq.uid).reason
    assert stranger.read_bytes() == b"someone else's pixels"  # never replaced


def test_the_demo_lands_every_sample_with_its_companions(testdata, tmp_path: Path) -> None:
    from microfair.collect import scan
    from microfair.config import init_local_config, load_config
    from microfair.demo import MICROSCOPES, build_landing_zone
    from microfair.demo_samples import sample_files
    from microfair.ledger import Ledger

    config = init_local_config(tmp_path / "facility", MICROSCOPES)
    written = build_landing_zone(config, testdata)
    samples = {p.name for p in sample_files(testdata)}
    assert samples >= {"vsi-ets-test-jpg2k.vsi", "aperio_cmu1_small_region.svs", "imaris_ptk2_cell.ims",
                       "olympus_fv1000_3ch.oib"}
    assert samples <= {p.name for p in written}
    cfg = load_config(config)
    for zone in cfg.landing_zones:
        zone.stability_seconds = 0.0
    offered = [Path(a.source).name for a in scan(cfg, Ledger.from_config(cfg)).ready]
    assert samples <= set(offered) and "frame_t_0.ets" not in offered
    vsi = next(p for p in written if p.suffix == ".vsi")
    assert (vsi.with_name(f"_{vsi.stem}_") / "stack1" / "frame_t_0.ets").is_file()
