"""The per-tile QC statistics of a whole block in one pass: the numbers of summing
:func:`~microfair.qc.metrics.channel_block_stats` and :func:`~microfair.qc.metrics.plane_block_stats` over its
``tile`` x ``tile`` tiles, computed without cutting the block into tiles.

What depends on the tiling, and how it is kept:

- the intensity histogram, the NaN and the saturation counts do not depend on it: one ``bincount`` and one count
  over the whole block (integer counts, so the sum is the same in any order);
- the noise histogram takes runs of three horizontally adjacent pixels on every ``NOISE_ROW_STEP``-th row *of each
  tile*: with ``tile`` a multiple of the step those are the block's rows ``0, 4, 8 ...``, and runs that cross a
  tile's right edge are left out with a mask (they go to a spare bin that is dropped);
- the focus sums use the Laplacian inside each tile only: the block's Laplacian is the tile's at every pixel that is
  not on a tile's border, so the border rows and columns are zeroed before summing.

For 8- and 16-bit integers every value is an exact integer (second differences and Laplacians in int32, sums in
int64), so the result is the per-tile loop's, bit for bit. Other dtypes (floats, 32/64-bit integers, booleans) and
tiles that are not a multiple of ``NOISE_ROW_STEP`` go through the per-tile loop itself, whose float sums depend on
the order of summation. ``tests/unit/test_qc_tiled.py`` checks both against the loop.

The work is done on groups of whole tiles of one tile row (:data:`GROUP_PIXELS`), which bounds the temporaries.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from microfair.qc.metrics import (D_BINS, NOISE_ROW_STEP, PLANE_FIELDS, KeySpace, _int_difference_lut,
                                  channel_block_stats, intensity_keys, plane_block_stats)


def _tiles(block: np.ndarray, tile: int):
    ny, nx = block.shape[-2:]
    for y0 in range(0, ny, tile):
        for x0 in range(0, nx, tile):
            yield block[..., y0:y0 + tile, x0:x0 + tile]


#: Pixels of one plane worked on at once (whole tiles of one tile row): bounds the temporaries (~30 B per pixel).
GROUP_PIXELS = 1 << 19


def _groups(data: np.ndarray, tile: int):
    """Views of ``data`` (..., Y, X): one row of ``tile`` rows and whole tiles, about GROUP_PIXELS per plane."""
    ny, nx = data.shape[-2:]
    step = tile * max(1, GROUP_PIXELS // (tile * tile))
    for y0 in range(0, ny, tile):
        for x0 in range(0, nx, step):
            yield data[..., y0:y0 + tile, x0:x0 + step]


@lru_cache(maxsize=1)
def _lut16() -> np.ndarray:
    return _int_difference_lut().astype(np.uint16)


def _exact(dtype: np.dtype, tile: int) -> bool:
    return dtype.kind in "ui" and dtype.itemsize <= 2 and tile % NOISE_ROW_STEP == 0 and tile >= 3


def channel_stats_tiled(block: np.ndarray, space: KeySpace, tile: int) -> np.ndarray:
    """Sum of :func:`channel_block_stats` over the ``tile`` x ``tile`` tiles of ``block`` (..., Y, X)."""
    data = np.asarray(block)
    if not _exact(data.dtype, tile):
        out = np.zeros(space.vector_length, dtype=np.float64)
        for t in _tiles(data, tile):
            out += channel_block_stats(t, space)
        return out
    nk, nn = space.n_keys, space.n_noise
    tail = nk + nn * D_BINS
    out = np.zeros(space.vector_length, dtype=np.float64)
    hist = np.zeros(nk, dtype=np.int64)
    noise = np.zeros(nn * D_BINS + 1, dtype=np.int64)
    top = data.dtype.type(space.saturation_value)
    lut = _lut16()
    saturated = 0
    for part in _groups(data, tile):
        hist += np.bincount(intensity_keys(part.reshape(-1), space), minlength=nk)[:nk]
        saturated += int(np.count_nonzero(part == top))
        nx = part.shape[-1]
        if nx < 3:
            continue
        rows = part[..., ::NOISE_ROW_STEP, :]
        a, b, c = rows[..., :-2], rows[..., 1:-1], rows[..., 2:]
        d = a.astype(np.int32)
        d += c
        d -= b
        d -= b
        np.abs(d, out=d)
        # (intensity bin of b) * D_BINS + log-bin of |d|, in uint16 (at most 256 x 64 cells, + the spare one)
        cell = intensity_keys(b, space).astype(np.uint16) if space.offset else b.astype(np.uint16)
        cell >>= space.noise_shift
        cell *= D_BINS
        cell |= lut[d]
        # runs (x, x+1, x+2) inside one tile: x % tile <= tile - 3 (x + 2 < nx holds by construction)
        inside = (np.arange(nx - 2) % tile) <= tile - 3
        ok = (a != top) & (b != top) & (c != top) & inside
        cell[~ok] = nn * D_BINS  # the spare bin
        noise += np.bincount(cell.reshape(-1), minlength=nn * D_BINS + 1)
    out[:nk] = hist
    out[nk:tail] = noise[:nn * D_BINS]
    out[tail] = data.size
    out[tail + 1] = 0
    out[tail + 2] = saturated
    return out


def _border_columns(n: int, tile: int) -> np.ndarray:
    """Indexes into the interior positions 1 .. n-2 of an axis that lie on a tile's first or last column."""
    pos = np.arange(1, n - 1)
    r = pos % tile
    return np.nonzero((r == 0) | (r == tile - 1))[0]


def plane_stats_tiled(block: np.ndarray, tile: int) -> np.ndarray:
    """Sum of :func:`plane_block_stats` over the ``tile`` x ``tile`` tiles of ``block``: (..., PLANE_FIELDS)."""
    data = np.asarray(block)
    lead = data.shape[:-2]
    if not _exact(data.dtype, tile):
        out = np.zeros((*lead, PLANE_FIELDS), dtype=np.float64)
        for t in _tiles(data, tile):
            out += plane_block_stats(t)
        return out
    ny, nx = data.shape[-2:]
    sums = np.zeros((*lead, 4), dtype=np.int64)  # sum L, sum L^2, n L, sum I
    for part in _groups(data, tile):
        sums[..., 3] += part.sum(axis=(-2, -1), dtype=np.int64)
        h, w = part.shape[-2:]
        if h < 3 or w < 3:
            continue
        lap = np.add(part[..., :-2, 1:-1], part[..., 2:, 1:-1], dtype=np.int32)  # int32 straight from 8/16 bit
        np.add(lap, part[..., 1:-1, :-2], out=lap, casting="unsafe")
        np.add(lap, part[..., 1:-1, 2:], out=lap, casting="unsafe")
        lap -= np.multiply(part[..., 1:-1, 1:-1], 4, dtype=np.int32)
        # a group is one row of whole tiles: rows 1 .. h-2 are inside; columns on a tile's border are not
        lap[..., :, _border_columns(w, tile)] = 0
        sums[..., 0] += lap.sum(axis=(-2, -1), dtype=np.int64)
        sums[..., 1] += np.einsum("...ij,...ij->...", lap, lap, dtype=np.int64)
        widths = [min(tile, w - x0) for x0 in range(0, w, tile)]
        sums[..., 2] += (h - 2) * sum(tw - 2 for tw in widths if tw >= 3)
    out = np.zeros((*lead, PLANE_FIELDS), dtype=np.float64)
    out[..., :4] = sums
    out[..., 4] = ny * nx
    return out
