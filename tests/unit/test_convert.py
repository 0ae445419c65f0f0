"""Conversion to OME-Zarr: pixels at every level, layout, both NGFF versions, atomic publish."""

from __future__ import annotations

import json
import math
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import tifffile
import zarr
from skimage.transform import downscale_local_mean

from microfair.config.core import ConversionSettings
from microfair.convert import ConversionError, convert_to_zarr, stale_temporaries
from microfair.convert.layout import validate
from microfair.convert.pyramid import level_shapes
from microfair.imaging import open_image
from microfair.synthetic import textured_stack, write_ome_tiff


def reference_levels(plane: np.ndarray, n: int) -> list[np.ndarray]:
    """Independent reference: edge-replicated 2x2 mean with skimage, integers rounded half up."""
    out = [plane]
    for _ in range(n - 1):
        prev = out[-1].astype(np.float64)
        pad = [(0, 0)] * (prev.ndim - 2) + [(0, prev.shape[-2] % 2), (0, prev.shape[-1] % 2)]
        mean = downscale_local_mean(np.pad(prev, pad, mode="edge"), (1,) * (prev.ndim - 2) + (2, 2))
        if np.issubdtype(plane.dtype, np.integer):
            out.append(np.floor(mean + 0.5).astype(plane.dtype))
        else:
            out.append(mean.astype(plane.dtype))
    return out


def small(**kw) -> ConversionSettings:
    base = dict(chunk_xy=32, min_level_size=16, max_levels=8)
    base.update(kw)
    return ConversionSettings(**base)


def level_arrays(root: Path, scene: int = 0) -> list[np.ndarray]:
    group = zarr.open_group(str(root / str(scene)), mode="r")
    attrs = dict(group.attrs)
    ms = (attrs.get("ome") or attrs)["multiscales"][0]
    return [np.asarray(group[d["path"]][:]) for d in ms["datasets"]]


# a shard of 2 x 2 chunks of 32 x 32 pixels (of uint8: 4096 bytes), so level 0 has several shards and edge shards
SMALL_SHARD = 4 * 32 * 32


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
@pytest.mark.parametrize("ngff,shard", [("0.4", 16 << 20), ("0.5", 16 << 20), ("0.5", 0), ("0.5", SMALL_SHARD)])
def test_every_level_matches_a_reference_downsample(tmp_path, dtype, ngff, shard):
    # odd sizes and edge chunks: 83 x 101 with 32-pixel chunks
    data = textured_stack((2, 3, 83, 101), dtype=dtype, seed=1)
    src = write_ome_tiff(tmp_path / "in.ome.tiff", data, channels=["DAPI", "GFP"])
    target = shard * np.dtype(dtype).itemsize
    result = convert_to_zarr(open_image(src), tmp_path / "out.ome.zarr",
                             settings=small(ngff_version=ngff, shard_target_bytes=target), ome_xml=None)
    levels = level_arrays(result.path)
    expected = reference_levels(data[None], len(levels))  # (T, C, Z, Y, X)
    assert len(levels) == len(level_shapes((1, 2, 3, 83, 101), min_level_size=16, max_levels=8)) == 4
    for got, want in zip(levels, expected):
        assert got.shape == want.shape and got.dtype == want.dtype
        if dtype == "float32":
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        else:
            np.testing.assert_array_equal(got, want)
    validate(result.path, ngff)
    assert result.scenes[0].levels[-1][-2:] == (11, 13)
    arr = zarr.open_array(str(result.path / "0" / "0"), mode="r")
    sharded = ngff == "0.5" and shard > 0
    assert arr.chunks == (1, 1, 1, 32, 32)
    assert arr.shards == ((1, 1, 1, 64, 64) if shard == SMALL_SHARD else (1, 1, 1, 96, 128)) if sharded else \
        arr.shards is None
    if sharded:  # one file per shard; the smallest level (11 x 13) is one shard per plane
        files = [f for f in (result.path / "0" / "0" / "c").rglob("*") if f.is_file()]
        assert len(files) == 2 * 3 * math.prod(math.ceil(n / (arr.shards[-1] if i else arr.shards[-2]))
                                               for i, n in enumerate((83, 101)))
        last = zarr.open_array(str(result.path / "0" / str(len(levels) - 1)), mode="r")
        assert last.shards == (1, 1, 1, 11, 13)


def test_layout_metadata_and_ome_xml(tmp_path):
    data = textured_stack((2, 1, 64, 80), seed=2)
    src = write_ome_tiff(tmp_path / "in.ome.tiff", data, channels=["DAPI", "GFP"], pixel_size_um=0.325, z_step_um=0.5)
    xml = tifffile.TiffFile(src).ome_metadata
    result = convert_to_zarr(open_image(src), tmp_path / "x.ome.zarr", settings=small(), ome_xml=xml)
    root = result.path
    assert (root / "OME" / "METADATA.ome.xml").read_bytes() == xml.encode("utf-8")
    top = json.loads((root / "zarr.json").read_text())
    assert top["attributes"]["ome"]["bioformats2raw.layout"] == 3
    assert json.loads((root / "OME" / "zarr.json").read_text())["attributes"]["ome"]["series"] == ["0"]
    ome = json.loads((root / "0" / "zarr.json").read_text())["attributes"]["ome"]
    ms = ome["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["t", "c", "z", "y", "x"]
    assert ms["axes"][3] == {"name": "y", "type": "space", "unit": "micrometer"}
    scales = [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]]
    assert scales[0] == [1.0, 1.0, 0.5, 0.325, 0.325]
    assert scales[1][3:] == [0.65, 0.65]
    channels = ome["omero"]["channels"]
    assert [c["label"] for c in channels] == ["DAPI", "GFP"]
    assert all(len(c["color"]) == 6 for c in channels) and channels[0]["color"] != channels[1]["color"]
    w = channels[0]["window"]
    assert w["min"] == 0 and w["max"] == 65535 and 0 <= w["start"] < w["end"] <= 65535
    arr = json.loads((root / "0" / "0" / "zarr.json").read_text())
    assert arr["dimension_names"] == ["t", "c", "z", "y", "x"]
    # NGFF 0.5 is sharded: the whole 64 x 80 level fits the default 16 MiB target, in whole 32 x 32 chunks
    assert arr["chunk_grid"]["configuration"]["chunk_shape"] == [1, 1, 1, 64, 96]
    (sharding,) = arr["codecs"]
    assert sharding["name"] == "sharding_indexed"
    assert sharding["configuration"]["chunk_shape"] == [1, 1, 1, 32, 32]
    assert any(c["name"] == "zstd" for c in sharding["configuration"]["codecs"])
    assert not stale_temporaries(root)


def test_ngff_04_is_zarr_v2_with_bioformats2raw(tmp_path):
    src = write_ome_tiff(tmp_path / "in.ome.tiff", textured_stack((1, 2, 40, 40), seed=3))
    result = convert_to_zarr(open_image(src), tmp_path / "x.ome.zarr", settings=small(ngff_version="0.4",
                             compressor="blosc-lz4"), ome_xml="<OME/>")
    root = result.path
    assert json.loads((root / ".zattrs").read_text()) == {"bioformats2raw.layout": 3}
    assert json.loads((root / "OME" / ".zattrs").read_text()) == {"series": ["0"]}
    attrs = json.loads((root / "0" / ".zattrs").read_text())
    assert attrs["multiscales"][0]["version"] == "0.4" and "omero" in attrs
    assert json.loads((root / "0" / "0" / ".zarray").read_text())["compressor"]["id"] == "blosc"
    assert (root / "OME" / "METADATA.ome.xml").read_text() == "<OME/>"


def test_rgb_samples_become_channels(tmp_path):
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, (2, 50, 70, 3), dtype=np.uint8)
    src = tmp_path / "rgb.ome.tiff"
    tifffile.imwrite(src, rgb, ome=True, photometric="rgb", metadata={"axes": "ZYXS"})
    result = convert_to_zarr(open_image(src), tmp_path / "rgb.ome.zarr", settings=small(shard_target_bytes=SMALL_SHARD),
                             ome_xml=None)
    levels = level_arrays(result.path)
    assert levels[0].shape == (1, 3, 2, 50, 70)
    expected = reference_levels(np.moveaxis(rgb, -1, 0)[None], len(levels))  # (T, C=samples, Z, Y, X)
    for got, want in zip(levels, expected):
        np.testing.assert_array_equal(got, want)
    assert zarr.open_array(str(result.path / "0" / "0"), mode="r").shards == (1, 1, 1, 64, 64)
    assert result.scenes[0].rgb and result.scenes[0].channels == ["red", "green", "blue"]
    ome = json.loads((result.path / "0" / "zarr.json").read_text())["attributes"]["ome"]
    assert [c["color"] for c in ome["omero"]["channels"]] == ["FF0000", "00FF00", "0000FF"]


def test_multi_scene(tmp_path):
    a = textured_stack((1, 2, 40, 48), seed=5)
    b = textured_stack((1, 1, 24, 30), seed=6)
    src = tmp_path / "two.ome.tiff"
    with tifffile.TiffWriter(src, ome=True) as tif:
        tif.write(a, metadata={"axes": "CZYX"}, photometric="minisblack")
        tif.write(b, metadata={"axes": "CZYX"}, photometric="minisblack")
    img = open_image(src)
    assert len(img.scenes) == 2
    result = convert_to_zarr(img, tmp_path / "two.ome.zarr", settings=small(shard_target_bytes=2 * SMALL_SHARD),
                             ome_xml=None)
    assert [s.index for s in result.scenes] == [0, 1]
    for scene, data in ((0, a), (1, b)):
        levels = level_arrays(result.path, scene)
        for got, want in zip(levels, reference_levels(data[None], len(levels))):
            np.testing.assert_array_equal(got, want)
    assert len(level_arrays(result.path, 0)) == 3 and len(level_arrays(result.path, 1)) == 2
    series = json.loads((result.path / "OME" / "zarr.json").read_text())["attributes"]["ome"]["series"]
    assert series == ["0", "1"]
    assert len(result.qc.scenes) == 2


def test_existing_output_needs_overwrite(tmp_path):
    src = write_ome_tiff(tmp_path / "in.ome.tiff", textured_stack((1, 1, 32, 32), seed=7))
    out = tmp_path / "x.ome.zarr"
    convert_to_zarr(open_image(src), out, settings=small(), ome_xml=None)
    with pytest.raises(FileExistsError):
        convert_to_zarr(open_image(src), out, settings=small(), ome_xml=None)
    again = convert_to_zarr(open_image(src), out, settings=small(ngff_version="0.4"), ome_xml=None, overwrite=True)
    assert (again.path / ".zattrs").exists() and not (again.path / "zarr.json").exists()
    assert not stale_temporaries(out)


class FailingImage:
    """A BioImage whose lazy pixels raise in one chunk (a read error in the middle of the graph)."""

    def __init__(self, img, fail_block: tuple[int, ...]):
        self._img = img
        self._fail = fail_block

    def __getattr__(self, name):
        return getattr(self._img, name)

    def get_image_dask_data(self, *args, **kwargs):
        data = self._img.get_image_dask_data(*args, **kwargs).rechunk((1, 1, 1, 16, 16))

        def maybe_fail(block, block_info=None):
            if tuple(block_info[0]["chunk-location"]) == self._fail:
                raise OSError("simulated read error")
            return block

        return data.map_blocks(maybe_fail, dtype=data.dtype)


def test_failure_mid_way_publishes_nothing_and_a_rerun_succeeds(tmp_path):
    src = write_ome_tiff(tmp_path / "in.ome.tiff", textured_stack((2, 2, 48, 48), seed=8))
    out = tmp_path / "x.ome.zarr"
    with pytest.raises(ConversionError, match="simulated read error"):
        convert_to_zarr(FailingImage(open_image(src), (0, 1, 1, 2, 1)), out, settings=small(chunk_xy=16), ome_xml=None)
    assert not out.exists()
    assert not stale_temporaries(out)
    result = convert_to_zarr(open_image(src), out, settings=small(chunk_xy=16), ome_xml=None)
    np.testing.assert_array_equal(level_arrays(result.path)[0][0], textured_stack((2, 2, 48, 48), seed=8))


def test_leftover_temporary_from_a_crash_is_removed_and_redone(tmp_path):
    src = write_ome_tiff(tmp_path / "in.ome.tiff", textured_stack((1, 1, 32, 32), seed=9))
    out = tmp_path / "x.ome.zarr"
    crashed = tmp_path / ".x.ome.zarr.tmp-deadbeef"
    (crashed / "0").mkdir(parents=True)
    (crashed / "zarr.json").write_text("{half written")
    result = convert_to_zarr(open_image(src), out, settings=small(), ome_xml=None)
    assert not crashed.exists()
    validate(result.path, "0.5")


def test_runs_on_a_distributed_client(tmp_path):
    from distributed import Client, LocalCluster

    data = textured_stack((1, 2, 70, 90), seed=10)
    src = write_ome_tiff(tmp_path / "in.ome.tiff", data)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        result = convert_to_zarr(open_image(src), tmp_path / "x.ome.zarr", settings=small(), ome_xml=None,
                                 client=client)
    levels = level_arrays(result.path)
    for got, want in zip(levels, reference_levels(data[None], len(levels))):
        np.testing.assert_array_equal(got, want)


def test_the_source_is_read_once(tmp_path):
    """Every source chunk is read exactly once for all levels and the QC (one pass)."""
    data = textured_stack((2, 3, 96, 96), seed=11)
    src = write_ome_tiff(tmp_path / "in.ome.tiff", data)
    img = open_image(src)
    reads: list[tuple[int, ...]] = []

    class Counting(FailingImage):
        def get_image_dask_data(self, *args, **kwargs):
            base = self._img.get_image_dask_data(*args, **kwargs).rechunk((1, 1, 1, 32, 32)).persist()

            def count(block, block_info=None):
                reads.append(tuple(block_info[0]["chunk-location"]))
                return block

            return base.map_blocks(count, dtype=base.dtype)

    result = convert_to_zarr(Counting(img, ()), tmp_path / "x.ome.zarr", settings=small(), ome_xml=None)
    n_chunks = 2 * 3 * 3 * 3  # C * Z * Y-chunks * X-chunks (T = 1)
    assert len(result.scenes[0].levels) == 4
    assert sorted(reads) == sorted(set(reads)) and len(reads) == n_chunks


def test_slabs_give_the_same_zarr_and_qc_as_one_graph(tmp_path, monkeypatch):
    """A scene computed in slabs of planes (bounded graph) equals the one-graph result, QC included."""
    import microfair.convert.slabs as slab_module
    from microfair.convert.source import scene_source

    import bioio

    data = textured_stack((2, 5, 70, 90), seed=12)
    src = write_ome_tiff(tmp_path / "in.ome.tiff", data)

    def planes():  # plane chunks: bioio-ome-tiff's default (one chunk per Z stack) cannot be cut in Z
        return bioio.BioImage(src, chunk_dims=["Y", "X"])

    whole = convert_to_zarr(planes(), tmp_path / "whole.ome.zarr", settings=small(engine="dask"), ome_xml=None)
    monkeypatch.setattr(slab_module, "SLAB_CHUNKS", 2 * 3 * 3)  # one plane of both channels per slab
    assert len(slab_module.slabs(scene_source(planes(), 0).data, 1, 32)) == 5
    sliced = convert_to_zarr(planes(), tmp_path / "sliced.ome.zarr", settings=small(engine="dask"), ome_xml=None)
    for a, b in zip(level_arrays(whole.path), level_arrays(sliced.path)):
        np.testing.assert_array_equal(a, b)
    qa, qb = whole.qc.to_dict(), sliced.qc.to_dict()
    for q in (qa, qb):
        q.pop("source", None), q.pop("created", None)
    assert json.dumps(qa, sort_keys=True, default=str) == json.dumps(qb, sort_keys=True, default=str)


def test_the_thread_count_follows_the_memory_limit():
    from microfair.convert.memory import BASELINE_MB, memory_plan, per_worker_mb

    per = per_worker_mb(8 << 20, (1, 1, 1, 1024, 1024), np.dtype("uint16"))
    assert per == pytest.approx(16 + 32 + 6)
    assert memory_plan(1000, 8 << 20, (1, 1, 1, 1024, 1024), np.dtype("uint16"), cores=16).workers == \
        int((1000 - BASELINE_MB) // per) == 10
    assert memory_plan(4096, 8 << 20, (1, 1, 1, 1024, 1024), np.dtype("uint16"), cores=2).workers == 2
    tight = memory_plan(BASELINE_MB + 10, 64 << 20, (1, 1, 1, 1024, 1024), np.dtype("uint16"), cores=8)
    assert tight.workers == 1 and not tight.fits


def test_sharded_output_opens_in_ome_zarr_py(tmp_path):
    """The sharded NGFF 0.5 result reads back through ome-zarr-py's reader, every level, with the same pixels."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    data = textured_stack((2, 2, 70, 90), seed=12)
    src = write_ome_tiff(tmp_path / "in.ome.tiff", data, channels=["DAPI", "GFP"])
    result = convert_to_zarr(open_image(src), tmp_path / "s.ome.zarr",
                             settings=small(shard_target_bytes=SMALL_SHARD * 2), ome_xml=None)
    assert zarr.open_array(str(result.path / "0" / "0"), mode="r").shards == (1, 1, 1, 64, 64)
    nodes = list(Reader(parse_url(str(result.path / "0")))())
    pyramid = nodes[0].data
    mine = level_arrays(result.path)
    assert len(pyramid) == len(mine) == 4  # 70 x 90 down to 9 x 12 (min_level_size 16)
    for theirs, ours in zip(pyramid, mine):
        np.testing.assert_array_equal(np.asarray(theirs), ours)
    np.testing.assert_array_equal(np.asarray(pyramid[0])[0], data)


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_qc_of_big_blocks_equals_qc_of_chunk_tiles(dtype):
    """One QC task per write block gives the numbers of the per-tile QC graph (odd edges, several blocks)."""
    from microfair.convert.qcblocks import block_qc_graph
    from microfair.qc.reduce import qc_graph

    data = textured_stack((2, 3, 150, 170), dtype=dtype, seed=13)[None]  # (T, C, Z, Y, X)
    blocks = da.from_array(data, chunks=(1, 1, 1, 64, 128))  # 2 x 4 tiles of 32 per block, edge blocks partial
    tiles = blocks.rechunk((1, 1, 1, 32, 32))
    thumb = blocks[..., ::4, ::4]
    ours = dask.compute(*block_qc_graph(blocks, thumb, 32).lazy)
    theirs = dask.compute(*qc_graph(tiles, thumb).lazy)
    np.testing.assert_array_equal(ours[0], theirs[0])  # histograms and counts: exact
    for a, b in zip(ours[1:], theirs[1:]):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    with pytest.raises(ValueError, match="whole 32 x 32 tiles"):
        block_qc_graph(da.from_array(data, chunks=(1, 1, 1, 48, 48)), thumb, 32)
