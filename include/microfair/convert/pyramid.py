"""The multiscale pyramid: which levels, and how one level is made from the one above it.

Every level halves Y and X (Z, C and T are kept). A pixel of level k+1 is the mean of a 2x2
block of level k (area averaging, the right thing for intensities). When Y or X is odd, the
last row/column is replicated before averaging, so the edge pixel is the mean of the pixels
that exist and nothing is dropped: a level has ``ceil(n / 2)`` pixels along Y and X.
Integers are rounded half up; floats keep their dtype.

Everything is lazy dask: level k+1 is computed from the in-memory blocks of level k, in the
same graph as the source read, so the source is read once for all levels.
"""

from __future__ import annotations

import math

import dask.array as da
import numpy as np


def level_shapes(shape: tuple[int, ...], *, min_level_size: int, max_levels: int) -> list[tuple[int, ...]]:
    """Shapes of the pyramid levels of a (..., Y, X) array.

    Halve Y and X until both fit ``min_level_size``, keeping at most ``max_levels`` levels
    (level 0 included).
    """
    shapes = [tuple(int(s) for s in shape)]
    while len(shapes) < max_levels:
        *lead, y, x = shapes[-1]
        if y <= min_level_size and x <= min_level_size:
            break
        shapes.append((*lead, math.ceil(y / 2), math.ceil(x / 2)))
    return shapes


def downsample2(block: np.ndarray) -> np.ndarray:
    """2x2 mean over the last two axes (odd edges replicated; integers rounded half up)."""
    *lead, y, x = block.shape
    if y % 2 or x % 2:
        pad = [(0, 0)] * len(lead) + [(0, y % 2), (0, x % 2)]
        block = np.pad(block, pad, mode="edge")
    # pairwise sums of strided views: rows, then columns (20x faster than summing a reshaped 2x2 axis)
    top, bottom = block[..., 0::2, :], block[..., 1::2, :]
    dt = block.dtype
    if dt.kind == "b":
        rows = top | bottom
        return rows[..., 0::2] | rows[..., 1::2]
    if dt.kind == "f":
        acc = np.float64 if dt.itemsize >= 8 else np.float32
        rows = np.add(top, bottom, dtype=acc)
        out = np.add(rows[..., 0::2], rows[..., 1::2])
        out *= acc(0.25)
        return out.astype(dt, copy=False)
    acc = np.uint32 if (dt.kind == "u" and dt.itemsize <= 2) else np.int64
    if dt.kind == "u" and dt.itemsize == 8:
        acc = np.uint64
    rows = np.add(top, bottom, dtype=acc)
    s = np.add(rows[..., 0::2], rows[..., 1::2])
    s += acc(2)
    s >>= acc(2)  # floor division by 4 (arithmetic shift for signed integers)
    return s.astype(dt, copy=False)


def halve(block: np.ndarray, band_pixels: int = 1 << 21) -> np.ndarray:
    """:func:`downsample2` of a whole plane (or unit of planes), made a band of rows at a time so that its wide
    temporaries (sums of two rows in 32 bits: twice the input for 16-bit pixels) stay a few MB, not plane-sized.

    The bands have an even number of rows (but the last), so the result is :func:`downsample2`'s, bit for bit.
    """
    *lead, y, x = block.shape
    rows = max(2, band_pixels // max(1, x * math.prod(lead)) // 2 * 2)
    if rows >= y:
        return downsample2(block)
    out = np.empty((*lead, (y + 1) // 2, (x + 1) // 2), dtype=block.dtype)
    for y0 in range(0, y, rows):
        y1 = min(y0 + rows, y)
        out[..., y0 // 2:(y1 + 1) // 2, :] = downsample2(block[..., y0:y1, :])
    return out


def _even(chunks: tuple[int, ...]) -> bool:
    return all(c % 2 == 0 for c in chunks[:-1])


def _evened(chunks: tuple[int, ...]) -> tuple[int, ...]:
    """Chunks of the same total with every chunk but the last even (for 2x2 blocks)."""
    if _even(chunks):
        return chunks
    size = max(2, chunks[0] + (chunks[0] % 2))
    total = sum(chunks)
    out = [size] * (total // size)
    if total % size:
        out.append(total % size)
    return tuple(out)


def downsample_level(x: da.Array) -> da.Array:
    """The next pyramid level of a lazy (..., Y, X) array, block by block."""
    cy, cx = x.chunks[-2], x.chunks[-1]
    if not (_even(cy) and _even(cx)):
        x = x.rechunk({x.ndim - 2: _evened(cy), x.ndim - 1: _evened(cx)})
        cy, cx = x.chunks[-2], x.chunks[-1]
    out_chunks = (*x.chunks[:-2], tuple((c + 1) // 2 for c in cy), tuple((c + 1) // 2 for c in cx))
    return x.map_blocks(downsample2, chunks=out_chunks, dtype=x.dtype)


def build_pyramid(level0: da.Array, shapes: list[tuple[int, ...]], blocks: list[tuple[int, ...]] | tuple[int, ...]
                  ) -> list[da.Array]:
    """All levels of the pyramid; level k is chunked as ``blocks[k]`` (one dask block = one shard, or one tile of
    whole Zarr chunks), so every task reads, downsamples and writes a big unit of work."""
    per_level = [tuple(blocks)] * len(shapes) if blocks and isinstance(blocks[0], int) else list(blocks)
    levels = [level0.rechunk(per_level[0])]
    for shape, block in zip(shapes[1:], per_level[1:]):
        nxt = downsample_level(levels[-1])
        assert nxt.shape == shape, (nxt.shape, shape)
        levels.append(nxt.rechunk(block))
    return levels


def thumbnail_source(levels: list, size: int, smaller=None):
    """The first level whose Y and X fit ``2 * size``; coarser levels are made (not stored) if needed, with
    ``smaller`` (:func:`downsample_level` for lazy dask levels, :func:`halve` for in-memory ones)."""
    smaller = smaller or downsample_level
    for lvl in levels:
        if max(lvl.shape[-2:]) <= 2 * size:
            return lvl
    lvl = levels[-1]
    while max(lvl.shape[-2:]) > 2 * size:
        lvl = smaller(lvl)
    return lvl
