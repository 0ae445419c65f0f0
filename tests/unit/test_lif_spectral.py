"""Leica spectral scans (λ emission and Λ excitation sweeps): one channel per wavelength.

The LIF files are written by ``tests/support/lif_writer.py`` (liffile has no writer) and the
expected pixels come from liffile's own ``asarray()``, indexed here plane by plane, so the test
does not reuse the reader's reshaping.
"""

from __future__ import annotations

from pathlib import Path

import liffile
import numpy as np
import pytest
import zarr
from bioio import BioImage

from microfair.config.core import ConversionSettings
from microfair.convert import convert_to_zarr
from microfair.imaging import open_image, reader_identity
from microfair.imaging.leica import LifLayoutError, map_axes
from microfair.imaging.lif_plugin import Reader
from microfair.metadata import extract_metadata
from microfair.metadata.records import build_rembi
from tests.support.lif_writer import LifImageSpec, write_lif

RNG = np.random.default_rng(13)
EMISSION = (5.0e-7, 5.4e-7)  # 500, 520, 540 nm in three steps
EXCITATION = (4.7e-7, 5.0e-7)  # 470 ... 500 nm in four steps


def _spectral_file(path: Path) -> dict[str, np.ndarray]:
    images = {
        "lambda": (RNG.integers(0, 4096, (3, 5, 6), dtype=np.uint16), ("λ", "Y", "X")),
        "Lambda": (RNG.integers(0, 255, (4, 5, 6), dtype=np.uint8), ("Λ", "Y", "X")),
        "TlZ": (RNG.integers(0, 4096, (2, 3, 4, 5, 6), dtype=np.uint16), ("T", "λ", "Z", "Y", "X")),
        "Cl": (RNG.integers(0, 255, (2, 3, 5, 6), dtype=np.uint8), ("C", "λ", "Y", "X")),
    }
    ranges = {"λ": EMISSION, "Λ": EXCITATION, "T": (0.0, 3.0), "Z": (0.0, 1.5e-6)}
    write_lif(path, [
        LifImageSpec(name, data, dims, ranges=ranges,
                     settings={"ObjectiveName": "HC PL APO 63x/1.40 OIL", "NumericalAperture": "1.4",
                               "Immersion": "OIL", "MicroscopeModel": "DMi8"})
        for name, (data, dims) in images.items()
    ])
    with liffile.LifFile(path) as lif:  # the writer round-trips through liffile
        for image, (data, dims) in zip(lif.images, images.values()):
            assert tuple(image.sizes) == dims
            np.testing.assert_array_equal(image.asarray(), data)
        return {image.name: image.asarray() for image in lif.images}


@pytest.fixture(scope="module")
def spectral(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    path = tmp_path_factory.mktemp("lif") / "spectral.lif"
    return path, _spectral_file(path)


def test_lambda_sweep_is_one_channel_per_wavelength(spectral) -> None:
    path, source = spectral
    img = open_image(path, scene="lambda")
    assert reader_identity(img)[0] == "microfair-lif"
    assert img.dims.order == "TCZYX" and img.shape == (1, 3, 1, 5, 6)
    assert list(img.channel_names) == ["λ 500 nm", "λ 520 nm", "λ 540 nm"]
    for k in range(3):
        np.testing.assert_array_equal(img.get_image_data("YX", C=k), source["lambda"][k])
    np.testing.assert_array_equal(img.get_image_dask_data().compute(), img.get_image_data())
    assert img.reader.original_axes == {"C": "λ (emission wavelength sweep)"}
    channels = img.ome_metadata.images[0].pixels.channels
    assert [c.emission_wavelength for c in channels] == [500.0, 520.0, 540.0]
    assert all(c.excitation_wavelength is None for c in channels)


def test_excitation_sweep_keeps_excitation_wavelengths(spectral) -> None:
    path, source = spectral
    img = open_image(path, scene="Lambda")
    assert img.shape == (1, 4, 1, 5, 6)
    assert list(img.channel_names) == ["Λ 470 nm", "Λ 480 nm", "Λ 490 nm", "Λ 500 nm"]
    for k in range(4):
        np.testing.assert_array_equal(img.get_image_data("YX", C=k), source["Lambda"][k])
    channels = img.ome_metadata.images[1].pixels.channels
    assert [c.excitation_wavelength for c in channels] == [470.0, 480.0, 490.0, 500.0]
    assert "ExcitationWavelength=\"470.0\"" in img.ome_metadata.to_xml()


def test_t_lambda_z_stack_holds_lambda_in_c(spectral) -> None:
    path, source = spectral
    img = BioImage(path, reader=Reader)
    img.set_scene("TlZ")
    assert img.shape == (2, 3, 4, 5, 6)
    assert img.time_interval.total_seconds() == pytest.approx(3.0)
    assert img.physical_pixel_sizes.Z == pytest.approx(0.5)
    lazy = img.get_image_dask_data()
    assert lazy.chunks[1] == (1, 1, 1) and lazy.chunks[2] == (1, 1, 1, 1)  # still one plane per chunk
    data = lazy.compute()
    for t in range(2):
        for lam in range(3):
            for z in range(4):
                np.testing.assert_array_equal(data[t, lam, z], source["TlZ"][t, lam, z])
    np.testing.assert_array_equal(img.get_image_data(), data)


def test_channels_times_lambda_in_documented_order(spectral) -> None:
    """Channel slowest, λ fastest: output channel c * nλ + iλ."""
    path, source = spectral
    img = open_image(path, scene="Cl")
    names = list(img.channel_names)
    assert names == [f"{lut} λ {nm} nm" for lut in ("Green", "Red") for nm in (500, 520, 540)]
    for c in range(2):
        for lam in range(3):
            np.testing.assert_array_equal(img.get_image_data("YX", C=c * 3 + lam), source["Cl"][c, lam])


def test_wavelengths_reach_metadata_rembi_and_the_zarr(spectral, tmp_path: Path) -> None:
    path, source = spectral
    img = open_image(path)
    meta = extract_metadata(img)
    lam = next(s for s in meta.scenes if s.name == "lambda")
    assert [(c.name, c.emission_nm) for c in lam.channels] == [
        ("λ 500 nm", 500.0), ("λ 520 nm", 520.0), ("λ 540 nm", 540.0)]
    assert 'EmissionWavelength="520.0"' in meta.ome_xml
    rembi = build_rembi(meta, {"uid": "d1", "file_name": path.name})
    channels = rembi["image_acquisition"]["image_acquisition_parameters"]["channels"]
    assert channels[1] == {"name": "λ 520 nm", "emission_nm": 520.0}
    assert rembi["image_data"]["scenes"][0]["channels"] == ["λ 500 nm", "λ 520 nm", "λ 540 nm"]
    settings = ConversionSettings(ngff_version="0.5", chunk_xy=16, min_level_size=16)
    convert_to_zarr(img, tmp_path / "s.ome.zarr", settings=settings, ome_xml=meta.ome_xml)
    group = zarr.open_group(str(tmp_path / "s.ome.zarr"), mode="r")
    labels = [c["label"] for c in group["0"].attrs["ome"]["omero"]["channels"]]
    assert labels == ["λ 500 nm", "λ 520 nm", "λ 540 nm"]
    np.testing.assert_array_equal(group["0/0"][0, :, 0], source["lambda"])  # scene 0 is the λ sweep


@pytest.mark.parametrize(
    ("dims", "target", "channel_axes", "shape"),
    [
        (("λ", "Y", "X"), ("C", "Y", "X"), ("λ",), (1, 2, 1, 3, 4)),
        (("Λ", "λ", "C", "Y", "X"), ("C", "C", "C", "Y", "X"), ("C", "Λ", "λ"), (1, 24, 1, 5, 6)),
        (("T", "λ", "Z", "Y", "X"), ("T", "C", "Z", "Y", "X"), ("λ",), (2, 3, 4, 5, 6)),
        (("λ", "X"), ("C", "X"), ("λ",), (1, 2, 1, 1, 3)),  # a spectral line scan: Y is 1
    ],
)
def test_spectral_axis_mapping(dims, target, channel_axes, shape) -> None:
    mapping = map_axes(dims)
    assert mapping.target == target
    assert mapping.channel_axes == channel_axes
    assert mapping.output_shape(tuple(range(2, 2 + len(dims)))) == shape
    order = [mapping.source[i] for i in mapping.permutation()]
    assert [d for d in order if d in channel_axes] == list(channel_axes)  # merged axes in documented order


def test_an_unmappable_layout_names_its_axes() -> None:
    with pytest.raises(LifLayoutError, match=r"A \(rotation\), N \(XT slices\)"):
        map_axes(("T", "Z", "A", "N", "Y", "X"))


def test_an_intact_lif_with_axes_we_cannot_map_is_unsupported_layout_not_corrupt(tmp_path: Path, monkeypatch) -> None:
    from microfair.imaging import UnreadableImage
    from microfair.imaging.errors import UNSUPPORTED_LAYOUT

    monkeypatch.delenv("MICROFAIR_BIOFORMATS_JAR", raising=False)
    data = RNG.integers(0, 255, (2, 2, 2, 2, 5, 6), dtype=np.uint8)
    path = write_lif(tmp_path / "rotations.lif", [LifImageSpec("TZAN", data, ("T", "Z", "A", "N", "Y", "X"))])
    with liffile.LifFile(path) as lif:  # intact: liffile reads every pixel
        np.testing.assert_array_equal(lif.images[0].asarray(), data)
    with pytest.raises(UnreadableImage) as info:
        open_image(path)
    assert info.value.kind == UNSUPPORTED_LAYOUT
    assert "corrupt" not in str(info.value) and "truncated" not in str(info.value)
    assert "A (rotation)" in info.value.reason and "N (XT slices)" in info.value.reason


def test_labels_stay_unique_when_the_file_names_no_channel() -> None:
    from microfair.imaging.leica_spectral import spectral_channels
    from microfair.imaging.ome_build import ChannelSpec

    mapping = map_axes(("C", "λ", "Y", "X"))
    out = spectral_channels([ChannelSpec(None), ChannelSpec(None)], mapping, {"λ": [500.0, 510.0]},
                            {"C": 2, "λ": 2, "Y": 4, "X": 4})
    assert [c.name for c in out] == ["C0 λ 500 nm", "C0 λ 510 nm", "C1 λ 500 nm", "C1 λ 510 nm"]
    assert [c.emission_nm for c in out] == [500.0, 510.0, 500.0, 510.0]
    steps = spectral_channels([ChannelSpec("PMT 1")], map_axes(("λ", "Y", "X")), {}, {"λ": 2, "Y": 4, "X": 4})
    assert [c.name for c in steps] == ["λ step 1", "λ step 2"] and steps[0].emission_nm is None
