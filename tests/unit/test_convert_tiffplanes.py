"""TIFF pixels read page by page straight through tifffile are the reader's pixels, in the reader's layout."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from microfair.convert.source import scene_source
from microfair.convert.tiffplanes import HANDLES
from microfair.imaging import open_image


def _direct(data) -> bool:
    return any(name.startswith("tiff-page-") for name in data.dask.layers)


LAYOUTS = {
    "CZYX uint16 tiled zlib": (np.random.default_rng(1).integers(0, 65535, (2, 3, 70, 90), dtype=np.uint16),
                               dict(metadata={"axes": "CZYX"}, tile=(32, 32), compression="zlib")),
    "TCZYX uint8": (np.random.default_rng(2).integers(0, 255, (2, 2, 3, 33, 17), dtype=np.uint8),
                    dict(metadata={"axes": "TCZYX"})),
    "ZYX float32": (np.random.default_rng(3).normal(size=(4, 20, 30)).astype(np.float32),
                    dict(metadata={"axes": "ZYX"})),
    "ZYXS rgb": (np.random.default_rng(4).integers(0, 255, (3, 24, 16, 3), dtype=np.uint8),
                 dict(photometric="rgb", metadata={"axes": "ZYXS"})),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_pages_read_directly_equal_the_readers_pixels(tmp_path, layout):
    data, kw = LAYOUTS[layout]
    src = tmp_path / "img.ome.tiff"
    tifffile.imwrite(src, data, ome=True, **({"photometric": "minisblack"} | kw))
    img = open_image(src)
    source = scene_source(img, 0)
    assert _direct(source.data), "the TIFF pages were not read directly"
    assert source.data.chunksize[2] == 1 and source.data.chunksize[-2:] == source.data.shape[-2:]
    if source.rgb:
        expected = img.get_image_dask_data("TCZYXS").compute()
        t, c, z, y, x, s = expected.shape
        expected = expected.transpose(0, 1, 5, 2, 3, 4).reshape(t, c * s, z, y, x)
    else:
        expected = img.get_image_dask_data("TCZYX").compute()
    got = source.data.compute()
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)
    HANDLES.close()


def test_every_scene_of_a_multi_series_file(tmp_path):
    a = np.arange(2 * 16 * 24, dtype=np.uint16).reshape(2, 16, 24)
    b = (np.arange(3 * 8 * 8, dtype=np.uint16).reshape(3, 8, 8) * 7)
    src = tmp_path / "two.ome.tiff"
    with tifffile.TiffWriter(src, ome=True) as tw:
        tw.write(a, metadata={"axes": "ZYX"}, photometric="minisblack")
        tw.write(b, metadata={"axes": "CYX"}, photometric="minisblack")
    img = open_image(src)
    first, second = scene_source(img, 0), scene_source(img, 1)
    assert _direct(first.data) and _direct(second.data)
    np.testing.assert_array_equal(first.data.compute()[0, 0], a)
    np.testing.assert_array_equal(second.data.compute()[0, :, 0], b)
    HANDLES.close()


def test_a_file_whose_series_does_not_map_keeps_the_readers_chunks(tmp_path):
    """A plain TIFF whose axes tifffile cannot name (Q) is left to the reader."""
    src = tmp_path / "plain.tif"
    tifffile.imwrite(src, np.zeros((3, 4, 16, 16), dtype=np.uint16))
    source = scene_source(open_image(src), 0)
    assert not _direct(source.data)


def test_a_file_changed_during_the_conversion_is_an_error(tmp_path):
    data, kw = LAYOUTS["TCZYX uint8"]
    src = tmp_path / "img.ome.tiff"
    tifffile.imwrite(src, data, ome=True, photometric="minisblack", **kw)
    source = scene_source(open_image(src), 0)
    HANDLES.close()
    tifffile.imwrite(src, data[:, :, :2], ome=True, photometric="minisblack", **kw)
    with pytest.raises(OSError, match="changed"):
        source.data.compute()
