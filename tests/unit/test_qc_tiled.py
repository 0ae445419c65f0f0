"""The one-pass block QC kernels give the per-tile loop's numbers (``microfair.qc.tiled``)."""

from __future__ import annotations

import numpy as np
import pytest

from microfair.qc.metrics import channel_block_stats, key_space, plane_block_stats
from microfair.qc.tiled import channel_stats_tiled, plane_stats_tiled


def tile_loop(block: np.ndarray, tile: int, per_tile) -> np.ndarray:
    """The reference: cut ``block`` into tiles and add up ``per_tile`` of each (what qcblocks did)."""
    total = None
    for y0 in range(0, block.shape[-2], tile):
        for x0 in range(0, block.shape[-1], tile):
            part = per_tile(block[..., y0:y0 + tile, x0:x0 + tile])
            total = part if total is None else total + part
    return total


def sample(dtype: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == "float32":
        x = rng.normal(100, 20, shape).astype(np.float32)
        x.flat[::97] = np.nan
        return x
    info = np.iinfo(dtype)
    x = rng.integers(info.min, int(info.max) + 1, shape, dtype=dtype)
    x[..., :3, :] = info.max  # saturated rows: runs touching them are left out of the noise histogram
    x[..., 5, 7:40] = info.max
    return x


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "int32", "float32"])
@pytest.mark.parametrize("shape,tile", [((1, 1, 2, 96, 160), 32), ((1, 1, 1, 70, 101), 32), ((2, 66, 34), 16),
                                        ((1, 1, 1, 64, 1030), 512), ((1, 1, 1, 40, 34), 20)])
def test_block_kernels_equal_the_per_tile_loop(dtype, shape, tile):
    block = sample(dtype, shape, seed=sum(shape) + tile)
    space = key_space(block.dtype)
    expected = tile_loop(block, tile, lambda t: channel_block_stats(t, space))
    got = channel_stats_tiled(block, space, tile)
    np.testing.assert_array_equal(got, expected)
    assert got[-1] > 0 or dtype == "float32"  # saturated pixels counted
    np.testing.assert_array_equal(plane_stats_tiled(block, tile), tile_loop(block, tile, plane_block_stats))


def test_uint16_full_range_noise_is_exact():
    """Worst-case second differences and Laplacians (0 / 65535 checkerboard with noise): exact integer sums."""
    rng = np.random.default_rng(5)
    block = (np.indices((128, 256)).sum(axis=0) % 2 * 65534).astype(np.uint16)
    block ^= rng.integers(0, 2, block.shape, dtype=np.uint16)
    block = block[None, None, None]
    space = key_space(block.dtype)
    np.testing.assert_array_equal(channel_stats_tiled(block, space, 64),
                                  tile_loop(block, 64, lambda t: channel_block_stats(t, space)))
    np.testing.assert_array_equal(plane_stats_tiled(block, 64), tile_loop(block, 64, plane_block_stats))
