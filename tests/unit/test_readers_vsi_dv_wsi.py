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
