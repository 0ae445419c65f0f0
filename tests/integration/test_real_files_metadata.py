"""The real Zeiss CZI and Leica LIF sample files: dims, pixel sizes, channels, lazy == eager."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ome_types import from_xml

from microfair.imaging import UnreadableImage, open_image, reader_identity
from microfair.metadata import extract_metadata

pytestmark = pytest.mark.integration

CZI_5D = "zeiss_s1_t3_c2_z5.czi"
CZI_2D = "zeiss_s1_t1_c1_z1.czi"
LIF = "leica_2channel_xz.lif"


def lazy_equals_eager(img) -> None:
    for scene in img.scenes:
        img.set_scene(scene)
        eager = img.get_image_data()
        lazy = img.get_image_dask_data()
        assert lazy.shape == eager.shape
        np.testing.assert_array_equal(lazy.compute(), eager)


def test_zeiss_timelapse_stack(testdata: Path) -> None:
    img = open_image(testdata / CZI_5D)
    assert reader_identity(img) == ("bioio-czi", "3.0.1") or reader_identity(img)[0] == "bioio-czi"
    lazy_equals_eager(img)
    meta = extract_metadata(testdata / CZI_5D)
    (scene,) = meta.scenes
    assert scene.dims == {"T": 3, "C": 2, "Z": 5, "Y": 170, "X": 240}
    assert scene.dtype == "uint16"
    assert scene.pixel_size_um["X"] == pytest.approx(0.0905767, rel=1e-5)
    assert scene.pixel_size_um["Z"] == pytest.approx(0.32)
    assert [c.name for c in scene.channels] == ["LED555", "LED470"]
    assert [c.emission_nm for c in scene.channels] == [568.0, 517.0]
    assert [c.fluor for c in scene.channels] == ["Alexa Fluor 555", "Alexa Fluor 488"]
    assert scene.time_increment_s == pytest.approx(60.045, abs=0.01)
    assert meta.manufacturer == "Zeiss" and meta.instrument == "Castor.Stand"
    assert meta.objective.model == "Plan-Apochromat 50x/1.2"
    assert meta.objective.numerical_aperture == 1.2 and meta.objective.magnification == 50
    assert meta.objective.immersion == "Water"
    assert meta.acquisition_date.isoformat().startswith("2016-02-12T09:41:02")
    assert meta.acquisition_software.startswith("ZEN 3.2")
    assert meta.ome_source == "reader"
    ome = from_xml(meta.ome_xml)
    assert ome.images[0].pixels.size_t == 3
    json.dumps(meta.to_dict())


def test_zeiss_single_plane(testdata: Path) -> None:
    meta = extract_metadata(testdata / CZI_2D)
    (scene,) = meta.scenes
    assert scene.dims == {"T": 1, "C": 1, "Z": 1, "Y": 325, "X": 475}
    assert scene.pixel_size_um == {"Z": None, "Y": pytest.approx(1.08333, rel=1e-5),
                                   "X": pytest.approx(1.08333, rel=1e-5)}
    assert [c.name for c in scene.channels] == ["Bright"]
    assert scene.time_increment_s is None
    assert meta.instrument == "Axio Observer.Z1 / 7"
    assert meta.objective.model == "Plan-Apochromat 20x/0.8 M27" and meta.objective.immersion == "Air"
    lazy_equals_eager(open_image(testdata / CZI_2D))


def test_leica_xz_scans_read_by_our_plugin(testdata: Path) -> None:
    img = open_image(testdata / LIF)
    assert reader_identity(img)[0] in ("microfair-lif", "microfair")
    assert img.scenes == ("xzt", "xzy", "xz")
    lazy_equals_eager(img)
    meta = extract_metadata(img)
    xzt, xzy, xz = meta.scenes
    assert xzt.dims == {"T": 20, "C": 2, "Z": 1, "Y": 128, "X": 128}
    assert xzy.dims == {"T": 1, "C": 2, "Z": 23, "Y": 128, "X": 128}
    assert xz.dims == {"T": 1, "C": 2, "Z": 1, "Y": 512, "X": 512}
    assert xzt.original_axes == {"Y": "Z (depth)"}
    assert xzy.original_axes == {"Y": "Z (depth)", "Z": "Y (height)"}
    assert xz.pixel_size_um["X"] == pytest.approx(0.1026972, rel=1e-5)
    assert xz.pixel_size_um["Y"] == pytest.approx(0.1026975, rel=1e-5)  # really the z step
    assert xzy.pixel_size_um["Z"] == pytest.approx(0.2290615, rel=1e-5)
    assert xzt.time_increment_s == pytest.approx(0.53)
    assert [c.name for c in xz.channels] == ["Leica/FITC", "Leica/TRITC"]
    assert meta.instrument == "DMI6000B-CS" and meta.manufacturer == "Leica Microsystems"
    assert meta.objective.numerical_aperture == 1.3 and meta.objective.magnification == 63
    assert meta.objective.immersion == "Glycerol"
    assert meta.acquisition_date.isoformat().startswith("2021-03-04T16:39:17")
    ome = from_xml(meta.ome_xml)
    annotations = ome.structured_annotations.map_annotations
    assert any(m.k == "Y" and m.value == "Z (depth)" for a in annotations for m in a.value.ms)


def test_leica_pixels_match_liffile(testdata: Path) -> None:
    import liffile

    img = open_image(testdata / LIF)
    with liffile.LifFile(testdata / LIF) as lif:
        raw = lif.images[2].asarray()  # (C, Z, X)
    img.set_scene("xz")
    np.testing.assert_array_equal(img.get_image_data("CYX"), raw)


@pytest.mark.parametrize(("name", "keep"), [(CZI_5D, 500_000), (LIF, 1_600_000)])
def test_truncated_real_files_are_refused(testdata: Path, tmp_path: Path, name: str, keep: int) -> None:
    cut = tmp_path / name
    cut.write_bytes((testdata / name).read_bytes()[:keep])
    with pytest.raises(UnreadableImage) as info:
        open_image(cut)
    assert "truncated or corrupt" in info.value.reason
