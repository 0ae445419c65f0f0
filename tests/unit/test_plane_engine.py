"""The plane engine (microfair.convert.planes) against the dask slab graph: the same Zarr at every level, the same
QC report and the same pixel proof, for every dtype and layout; units, memory fallback and failure."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

import microfair.convert.planes as planes
from microfair.config.core import ConversionSettings
from microfair.convert import ConversionError, convert_to_zarr, stale_temporaries
from microfair.convert.source import scene_source
from microfair.imaging import open_image
from microfair.synthetic import textured_stack, write_ome_tiff
from tests.unit.test_convert import level_arrays, reference_levels


def settings(engine: str, **kw) -> ConversionSettings:
    return ConversionSettings(**{"chunk_xy": 32, "min_level_size": 16, "max_levels": 8,
                                 "shard_target_bytes": 4 * 32 * 32 * 2, "engine": engine, **kw})


def qc_json(result) -> str:
    q = result.qc.to_dict()
    q.pop("source", None), q.pop("created", None)
    return json.dumps(q, sort_keys=True, default=str)


def both(src, tmp_path, **kw):
    out = {}
    for engine in ("planes", "dask"):
        out[engine] = convert_to_zarr(open_image(src), tmp_path / f"{engine}.ome.zarr", settings=settings(engine, **kw),
                                      ome_xml=None)
    return out["planes"], out["dask"]


def assert_same(a, b, n_scenes: int = 1) -> None:
    assert [m["engine"] for m in a.extra["memory"]] == ["planes"] * n_scenes
    assert [m["engine"] for m in b.extra["memory"]] == ["dask"] * n_scenes
    for scene in range(n_scenes):
        la, lb = level_arrays(a.path, scene), level_arrays(b.path, scene)
        assert len(la) == len(lb) > 1
        for x, y in zip(la, lb):
            assert x.dtype == y.dtype
            np.testing.assert_array_equal(x, y)
    assert a.extra["pixel_proof"]["scenes"] == b.extra["pixel_proof"]["scenes"]
    assert a.written_bytes > 0 and a.extra["written_chunk_bytes"] == b.extra["written_chunk_bytes"]


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16"])
def test_integer_stacks_give_the_same_zarr_qc_and_proof(tmp_path, dtype):
    data = textured_stack((2, 3, 70, 90), dtype="uint16", seed=41)
    data = (data // 300).astype(dtype) if dtype == "uint8" else data.astype(dtype)
    src = write_ome_tiff(tmp_path / "in.ome.tiff", data)
    a, b = both(src, tmp_path)
    assert_same(a, b)
    assert qc_json(a) == qc_json(b)  # integer statistics: bit for bit
    for got, want in zip(level_arrays(a.path), reference_levels(data[None], 8)):
        np.testing.assert_array_equal(got, want)


def test_float_stacks_give_the_same_zarr_and_close_qc(tmp_path):
    data = textured_stack((1, 2, 65, 77), dtype="uint16", seed=42).astype("float32") / 7.0
    data[0, 1, 3, 4] = np.nan
    src = write_ome_tiff(tmp_path / "in.ome.tiff", data)
    a, b = both(src, tmp_path)
    assert_same(a, b)
    (qa,), (qb,) = a.qc.scenes[0].channels, b.qc.scenes[0].channels
    qa, qb = qa.to_dict(), qb.to_dict()
    # the same counts and extrema; float sums may differ in the last bits (another order of summation)
    for key in ("min", "max", "n_pixels", "n_nan", "histogram", "saturation", "flags", "percentiles"):
        assert qa[key] == qb[key], key
    assert qa["n_nan"] == 1 and qa["min"] == pytest.approx(float(np.nanmin(data)), rel=1e-6)
    assert json.dumps(qa["snr"], default=str) == json.dumps(qb["snr"], default=str) or \
        qa["snr"] == pytest.approx(qb["snr"], rel=1e-9)
    assert qa["focus"].keys() == qb["focus"].keys()


def test_rgb_multi_scene_and_odd_sizes(tmp_path):
    rng = np.random.default_rng(43)
    rgb = rng.integers(0, 256, (3, 41, 67, 3), dtype=np.uint8)
    gray = textured_stack((1, 2, 33, 35), seed=44)
    src = tmp_path / "two.ome.tiff"
    with tifffile.TiffWriter(src, ome=True) as tif:
        tif.write(rgb, metadata={"axes": "ZYXS"}, photometric="rgb")
        tif.write(gray, metadata={"axes": "CZYX"}, photometric="minisblack")
    a, b = both(src, tmp_path)
    assert_same(a, b, n_scenes=2)
    assert qc_json(a) == qc_json(b)
    expected = reference_levels(np.moveaxis(rgb, -1, 0)[None], 8)
    for got, want in zip(level_arrays(a.path, 0), expected):
        np.testing.assert_array_equal(got, want)


def test_a_time_series_with_chunk_z_of_two(tmp_path):
    data = np.stack([textured_stack((2, 5, 40, 48), seed=s) for s in (45, 46)])  # T, C, Z, Y, X
    src = tmp_path / "t.ome.tiff"
    tifffile.imwrite(src, data, ome=True, metadata={"axes": "TCZYX"}, photometric="minisblack")
    img = open_image(src)
    img_planes = scene_source(img, 0).data
    units = planes.units(img_planes, 2)
    assert [u.z for u in units[:3]] == [(0, 2), (2, 4), (4, 5)]  # chunk_z planes a unit, the rest at the end
    assert len(units) == 2 * 2 * 3 and {u.t for u in units} == {(0, 1), (1, 2)}
    a, b = both(src, tmp_path, chunk_z=2)
    assert_same(a, b)
    assert qc_json(a) == qc_json(b)
    np.testing.assert_array_equal(level_arrays(a.path)[0], data)


def test_a_unit_too_large_for_the_memory_limit_goes_to_the_dask_path(tmp_path, monkeypatch):
    src = write_ome_tiff(tmp_path / "in.ome.tiff", textured_stack((1, 2, 64, 64), seed=47))
    monkeypatch.setattr(planes, "per_unit_mb", lambda *a: 10_000.0)  # no unit fits 1500 MB
    auto = convert_to_zarr(open_image(src), tmp_path / "auto.ome.zarr", settings=settings("auto"), ome_xml=None)
    assert auto.extra["memory"][0]["engine"] == "dask"
    out = tmp_path / "forced.ome.zarr"
    with pytest.raises(ConversionError, match="does not fit conversion.memory_limit_mb"):
        convert_to_zarr(open_image(src), out, settings=settings("planes"), ome_xml=None)
    assert not out.exists() and not stale_temporaries(out)


def test_a_failing_unit_stops_the_others_and_publishes_nothing(tmp_path, monkeypatch):
    data = textured_stack((2, 6, 64, 64), seed=48)
    src = write_ome_tiff(tmp_path / "in.ome.tiff", data)
    real, calls = planes.write_level, []

    def write_level(array, region, block):
        calls.append(region)
        if len(calls) == 7:
            raise OSError(28, "No space left on device")
        return real(array, region, block)

    monkeypatch.setattr(planes, "write_level", write_level)
    out = tmp_path / "x.ome.zarr"
    with pytest.raises(ConversionError, match="No space left on device"):
        convert_to_zarr(open_image(src), out, settings=settings("planes"), ome_xml=None)
    assert not out.exists() and not stale_temporaries(out)
    at_failure = len(calls)
    monkeypatch.setattr(planes, "write_level", real)
    levels = len(level_arrays(convert_to_zarr(open_image(src), tmp_path / "ok.ome.zarr", settings=settings("planes"),
                                              ome_xml=None).path))
    assert 7 <= at_failure < 12 * levels  # 12 units: those after the failure were not written
    result = convert_to_zarr(open_image(src), out, settings=settings("planes"), ome_xml=None)
    np.testing.assert_array_equal(level_arrays(result.path)[0][0], data)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32"])
def test_halving_in_bands_of_rows_is_the_whole_plane_mean(dtype):
    from microfair.convert.pyramid import downsample2, halve

    rng = np.random.default_rng(49)
    for shape in ((1, 1, 1, 37, 53), (1, 3, 2, 1025, 77), (1, 1, 1, 5, 3)):
        a = (rng.random(shape) * 1000).astype(dtype)
        for band_pixels in (64, 1000, 1 << 21):  # 2-row bands, odd-sized last bands, one band
            np.testing.assert_array_equal(halve(a, band_pixels), downsample2(a))


def test_a_thumbnail_beyond_the_stored_levels_is_the_dask_paths(tmp_path):
    data = textured_stack((1, 3, 1100, 600), seed=50)  # one stored level: the projection needs two more halvings
    src = write_ome_tiff(tmp_path / "in.ome.tiff", data)
    a, b = both(src, tmp_path, max_levels=1)
    mips = [np.asarray(x) for x in (a.qc.scenes[0].mip, b.qc.scenes[0].mip)]
    assert mips[0].shape == (1, 275, 150)
    np.testing.assert_array_equal(*mips)
    assert qc_json(a) == qc_json(b)
