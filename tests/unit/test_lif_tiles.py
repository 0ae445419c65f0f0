"""LAS X tile scans (liffile axis M): one scene per tile, in the file's order, each equal to liffile's tile."""

from __future__ import annotations

import os
from pathlib import Path

import liffile
import numpy as np
import pytest

from microfair.imaging import open_image, reader_identity
from tests.support.lif_writer import LifImageSpec, write_lif


def _assert_tiles_match_liffile(path: Path) -> int:
    img = open_image(path)
    assert reader_identity(img)[0] == "microfair-lif"
    with liffile.LifFile(path) as lif:
        expected = []
        for image in lif.images:
            data, dims = image.asarray(), "".join(image.dims)
            m = dims.index("M")
            for tile in range(data.shape[m]):
                one = np.take(data, tile, axis=m)
                rest = [d for d in dims if d != "M"]
                expected.append((f"{image.name} tile {tile}",
                                 one.transpose([rest.index(d) for d in "TCZYX" if d in rest])))
    assert list(img.scenes) == [name for name, _ in expected]
    for i, (_, want) in enumerate(expected):
        img.set_scene(i)
        lazy = img.get_image_dask_data("TCZYX")
        assert lazy.chunks[-2:] == ((want.shape[-2],), (want.shape[-1],)) and max(lazy.chunks[2]) == 1
        np.testing.assert_array_equal(np.squeeze(lazy.compute()), np.squeeze(want))
        assert "not stitched" in img.ome_metadata.images[i].description
    return len(expected)


def test_written_tile_scan_is_one_scene_per_tile(tmp_path: Path) -> None:
    data = np.random.default_rng(7).integers(0, 255, (2, 3, 2, 2, 5, 6), dtype=np.uint8)  # T M Z C Y X
    path = write_lif(tmp_path / "tiles.lif", [LifImageSpec("TileScan_001", data, ("T", "M", "Z", "C", "Y", "X"))])
    assert _assert_tiles_match_liffile(path) == 3


def test_real_las_x_tile_scan() -> None:
    root = os.environ.get("MICROFAIR_TESTDATA")
    if not root:
        pytest.skip("MICROFAIR_TESTDATA not set")
    assert _assert_tiles_match_liffile(Path(root) / "leica_lasx_simulator_tilescan.lif") == 4
