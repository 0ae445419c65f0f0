"""QC metrics, flags, report and the three entry points (conversion, file, Zarr)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from microfair.config.core import ConversionSettings, QcThresholds
from microfair.convert import convert_to_zarr
from microfair.imaging import open_image
from microfair.qc import qc_from_zarr, qc_image, write_qc_report
from microfair.qc.metrics import (
    ChannelStats,
    channel_block_stats,
    estimate_snr,
    focus_scores,
    key_space,
    key_values,
    intensity_keys,
    plane_block_stats,
)
from microfair.synthetic import textured_stack, write_ome_tiff


def stats_of(x: np.ndarray, blocks: int = 1) -> ChannelStats:
    """Statistics summed over ``blocks`` horizontal strips (as dask would combine them)."""
    space = key_space(x.dtype)
    vec = sum(channel_block_stats(part, space) for part in np.array_split(x, blocks, axis=-2))
    return ChannelStats.from_vector(vec, space, float(np.nanmin(x)), float(np.nanmax(x)))


def blobs(shape=(256, 256), seed=0, sigma=3.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    field = np.zeros(shape)
    field[rng.integers(0, shape[0], 60), rng.integers(0, shape[1], 60)] = 1.0
    field = ndimage.gaussian_filter(field, sigma)
    return field / field.max()


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "uint32", "float32", "float64"])
def test_keys_are_monotonic_and_invert(dtype):
    space = key_space(dtype)
    if np.dtype(dtype).kind == "f":
        values = np.array([-1e6, -2.5, -1e-3, 0.0, 1e-3, 0.5, 1.0, 3.0, 1e6], dtype=dtype)
    else:
        info = np.iinfo(dtype)
        values = np.array([info.min, info.min + 1, 0 if info.min < 0 else 1, 100, info.max - 1, info.max], dtype=dtype)
    keys = intensity_keys(values, space)
    assert np.all(np.diff(keys) >= 0) and keys.min() >= 0 and keys.max() < space.n_keys
    lo, hi = key_values(keys, space, 0.0), key_values(keys, space, 1.0)
    v = values.astype(np.float64)
    assert np.all(lo <= v + np.abs(v) * 1e-6) and np.all(hi >= v - np.abs(v) * 1e-6)
    if np.dtype(dtype).itemsize <= 2 and np.dtype(dtype).kind in "ui":
        np.testing.assert_array_equal(key_values(keys, space), values)


def test_percentiles_are_exact_for_16_bit_and_blocks_combine():
    x = np.random.default_rng(1).integers(0, 4096, (300, 200)).astype(np.uint16)
    one, many = stats_of(x), stats_of(x, blocks=7)
    for q in (0.1, 10, 50, 99.9):
        assert one.percentile(q) == many.percentile(q) == np.percentile(x, q, method="lower")
    assert many.n_valid == x.size and many.histogram.sum() == x.size


def test_snr_matches_photon_statistics_on_flat_levels():
    """Two Poisson levels, 100 and 900 photons: SVI SNR = (900 - 100) / sqrt(900) = 26.7."""
    rng = np.random.default_rng(2)
    mean = np.full((512, 512), 100.0)
    mean[:, 256:] = 900.0
    img = rng.poisson(mean).astype(np.uint16)
    snr = estimate_snr(stats_of(img, blocks=4))
    assert snr.snr == pytest.approx(800 / 30, rel=0.08)
    assert snr.noise_signal == pytest.approx(30, rel=0.08) and snr.noise_background == pytest.approx(10, rel=0.1)
    # pure noise has no signal
    flat = rng.poisson(np.full((256, 256), 200.0)).astype(np.uint16)
    assert estimate_snr(stats_of(flat)).snr < 1.0


def test_snr_decreases_with_noise():
    rng = np.random.default_rng(3)
    clean = 200 + 3000 * blobs()
    values = []
    for sigma in (5, 20, 80, 300):
        noisy = np.clip(clean + rng.normal(0, sigma, clean.shape), 0, 65535).astype(np.uint16)
        values.append(estimate_snr(stats_of(noisy)).snr)
    assert all(a > b for a, b in zip(values, values[1:])), values


def test_focus_decreases_with_blur_and_picks_the_sharp_plane():
    rng = np.random.default_rng(4)
    sharp = 200 + 3000 * blobs(sigma=1.5)
    planes = [ndimage.gaussian_filter(sharp, s) for s in (4.0, 2.0, 0.0, 1.0, 3.0)]
    stack = np.stack([p + rng.normal(0, 2, p.shape) for p in planes]).astype(np.float32)
    scores = focus_scores(plane_block_stats(stack))
    assert int(np.argmax(scores)) == 2
    by_blur = [scores[i] for i in (2, 3, 1, 4, 0)]  # blur 0, 1, 2, 3, 4
    assert all(a > b for a, b in zip(by_blur, by_blur[1:])), by_blur
    # independent of exposure
    np.testing.assert_allclose(focus_scores(plane_block_stats(stack * 3)), scores, rtol=1e-4)


def _convert(tmp_path, data, name="in", **kw):
    src = write_ome_tiff(tmp_path / f"{name}.ome.tiff", data, channels=[f"ch{i}" for i in range(data.shape[0])])
    return convert_to_zarr(open_image(src), tmp_path / f"{name}.ome.zarr",
                           settings=ConversionSettings(chunk_xy=64, min_level_size=32), ome_xml=None, **kw)


def test_saturated_image_is_flagged_not_dropped(tmp_path):
    data = textured_stack((1, 2, 128, 128), seed=5)
    data[0, 0, :40, :] = 65535  # channel 0 (2 planes): 15.6 % saturated
    result = _convert(tmp_path, data, qc=QcThresholds(saturation_max_fraction=0.01))
    ch = result.qc.scenes[0].channels[0]
    assert ch.saturated_count == 40 * 128 and ch.saturated_fraction == pytest.approx(40 / 256)
    flags = [f for f in result.qc.flags if f.metric == "saturation"]
    assert len(flags) == 1 and "saturated" in flags[0].reason and flags[0].value > 0.15
    assert not result.qc.passed and result.path.is_dir()  # flagged, still converted
    as_dict = result.qc.to_dict()
    assert as_dict["passed"] is False and as_dict["flags"][0]["metric"] == "saturation"


def test_blurred_image_is_flagged_on_focus(tmp_path):
    rng = np.random.default_rng(6)
    sharp = 300 + 20000 * blobs((128, 128), sigma=1.2)
    blurred = ndimage.gaussian_filter(sharp, 6)
    data = np.stack([sharp, blurred])[:, None] + rng.normal(0, 3, (2, 1, 128, 128))
    data = np.clip(data, 0, 65535).astype(np.uint16)
    result = _convert(tmp_path, data, qc=QcThresholds(focus_min=0.05, snr_min=0, dynamic_range_min_fraction=0))
    sharp_ch, blurred_ch = result.qc.scenes[0].channels
    assert sharp_ch.best_focus > 0.05 > blurred_ch.best_focus
    assert [f.channel for f in result.qc.flags if f.metric == "focus"] == [1]


def test_dim_image_is_flagged_on_dynamic_range(tmp_path):
    data = (textured_stack((1, 1, 64, 64), seed=7) // 64).astype(np.uint16)  # ~1.5 % of the range
    result = _convert(tmp_path, data, qc=QcThresholds(snr_min=0))
    assert [f.metric for f in result.qc.flags] == ["dynamic_range"]


def test_file_zarr_and_conversion_give_the_same_numbers(tmp_path):
    data = textured_stack((2, 3, 150, 170), seed=8)
    result = _convert(tmp_path, data)
    from_file = qc_image(open_image(tmp_path / "in.ome.tiff"), chunk_xy=64)
    from_zarr = qc_from_zarr(result.path)
    for report in (from_file, from_zarr):
        for a, b in zip(result.qc.scenes[0].channels, report.scenes[0].channels):
            assert a.to_dict() == b.to_dict()


def test_report_json_and_thumbnails(tmp_path):
    data = textured_stack((2, 3, 600, 500), seed=9)
    result = _convert(tmp_path, data, qc=QcThresholds(thumbnail_size=64))
    path = write_qc_report(result.qc, tmp_path / "reports")
    body = json.loads(path.read_text())
    ch = body["scenes"][0]["channels"][0]
    assert len(ch["histogram"]["counts"]) == 256 and sum(ch["histogram"]["counts"]) == 3 * 600 * 500
    assert ch["min"] == float(data[0].min()) and ch["max"] == float(data[0].max())
    assert len(ch["focus"]["per_plane"][0]) == 3 and ch["focus"]["best_plane"] in (0, 1, 2)
    assert set(body["thumbnails"]) == {"scene0/c0", "scene0/c1", "scene0/composite"}
    for rel in body["thumbnails"].values():
        png = Image.open(tmp_path / "reports" / rel)
        assert max(png.size) == 64
        pixels = np.asarray(png)
        assert pixels.min() < 30 and pixels.max() > 220  # contrast-stretched
    # the thumbnail is the max-intensity projection: its brightest spot is where the MIP's is
    mip = data[0].max(axis=0)
    grey = np.asarray(Image.open(tmp_path / "reports" / body["thumbnails"]["scene0/c0"]))
    y, x = np.unravel_index(np.argmax(mip), mip.shape)
    assert grey[int(y * grey.shape[0] / 600), int(x * grey.shape[1] / 500)] > 200


# --------------------------------------------------------------------------- bit depth (issue 11, item 8)


def _twelve_bit_camera(seed: int = 11) -> np.ndarray:
    """uint16 data from a 12-bit camera: background ~750, bright blobs up to ~3000, one pixel at 3033."""
    rng = np.random.default_rng(seed)
    level = 700 + 2300 * blobs((128, 128), seed=seed, sigma=2.0)
    data = np.clip(rng.poisson(level), 0, 4095).astype(np.uint16)
    data[5, 5] = 3033
    return data[None, None]  # (C, Z, Y, X)


def _ome_tiff(path, data, **extra):
    import tifffile

    tifffile.imwrite(path, data, ome=True, photometric="minisblack", metadata={"axes": "CZYX", **extra})
    return path


@pytest.mark.parametrize("bits, flagged, source", [(12, False, "SignificantBits=12"), (None, True, "dtype")])
def test_dynamic_range_comes_from_the_declared_bit_depth(tmp_path, bits, flagged, source):
    data = _twelve_bit_camera()
    extra = {"SignificantBits": bits} if bits else {}
    f = _ome_tiff(tmp_path / "cam.ome.tiff", data, **extra)
    lo, hi = np.percentile(data, [0.1, 99.9], method="lower")
    top = (2**bits - 1) if bits else 65535
    thresholds = QcThresholds(snr_min=0)
    result = convert_to_zarr(open_image(f), tmp_path / "cam.ome.zarr", settings=ConversionSettings(chunk_xy=64),
                             ome_xml=None, qc=thresholds)
    for report in (result.qc, qc_image(open_image(f), thresholds, chunk_xy=64), qc_from_zarr(result.path, thresholds)):
        ch = report.scenes[0].channels[0]
        assert ch.range_source == source
        assert ch.dynamic_range_fraction == pytest.approx((hi - lo) / top, rel=1e-9)
        assert ("dynamic_range" in [fl.metric for fl in report.flags]) is flagged
        body = report.to_dict()["scenes"][0]
        assert body["channels"][0]["range_source"] == source and body["significant_bits"] == bits


def test_a_bit_depth_the_data_exceed_is_ignored(tmp_path):
    """Declared 12 bits but values above 4095 (a camera that shifts its bits up): the dtype range is used."""
    data = (_twelve_bit_camera().astype(np.uint32) * 16).astype(np.uint16)
    report = qc_image(open_image(_ome_tiff(tmp_path / "s.ome.tiff", data, SignificantBits=12)), QcThresholds(snr_min=0))
    ch = report.scenes[0].channels[0]
    assert ch.range_source.startswith("dtype") and "SignificantBits=12 ignored" in ch.range_source
    lo, hi = np.percentile(data, [0.1, 99.9], method="lower")
    assert ch.dynamic_range_fraction == pytest.approx((hi - lo) / 65535, rel=1e-9)


def test_significant_bits_from_ome_xml():
    from microfair.qc.bitdepth import intensity_range, significant_bits_in_ome_xml

    xml = ('<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
           '<Image ID="Image:0"><Pixels ID="Pixels:0" Type="uint16" SignificantBits="14"/></Image>'
           '<Image ID="Image:1"><Pixels ID="Pixels:1" Type="uint16"/></Image></OME>')
    assert significant_bits_in_ome_xml(xml) == [14, None]
    assert significant_bits_in_ome_xml("not xml <") == [] and significant_bits_in_ome_xml(None) == []
    assert intensity_range(np.dtype("uint16"), 14, 9000.0).high == 16383
    assert intensity_range(np.dtype("uint16"), None, 9000.0).source == "dtype"
    assert intensity_range(np.dtype("uint8"), 12, 10.0).source.startswith("dtype")  # more bits than the type
    assert intensity_range(np.dtype("float32"), None, 1.0, 0.0).source == "observed"
    assert intensity_range(np.dtype("float32"), None, None) is None


def test_real_czi_samples_report_their_bit_depth(testdata):
    """bioio-czi gives the Zeiss ComponentBitCount as OME SignificantBits; a channel above it falls back."""
    report = qc_image(open_image(testdata / "zeiss_s1_t3_c2_z5.czi"))
    scene = report.scenes[0]
    assert scene.significant_bits == 14
    for ch in scene.channels:
        if ch.maximum <= 2**14 - 1:
            assert ch.range_source == "SignificantBits=14"
        else:
            assert "ignored" in ch.range_source


@pytest.mark.parametrize("bits, flagged", [(12, True), (None, False)])
def test_a_12_bit_camera_saturates_at_4095(tmp_path, bits, flagged):
    data = _twelve_bit_camera(seed=12)
    data[0, 0, :32, :] = 4095  # 25 % of the pixels at the 12-bit ceiling
    extra = {"SignificantBits": bits} if bits else {}
    report = qc_image(open_image(_ome_tiff(tmp_path / "sat.ome.tiff", data, **extra)),
                      QcThresholds(snr_min=0, dynamic_range_min_fraction=0))
    ch = report.scenes[0].channels[0]
    expected = int(np.count_nonzero(data == 4095)) if bits else 0
    assert ch.saturated_count == expected and ch.saturated_fraction == pytest.approx(expected / data.size)
    assert ("saturation" in [f.metric for f in report.flags]) is flagged
