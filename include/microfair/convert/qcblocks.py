"""The QC reductions of :func:`microfair.qc.reduce.qc_graph`, one task per write block instead of per tile.

The numbers are those of ``qc_graph`` on the Zarr-chunk tiling (what ``qc_image`` and ``qc_from_zarr``
use): each block is cut into the same ``tile`` x ``tile`` tiles (blocks are whole chunks, so the tiles are
the chunks), the per-tile statistics of :mod:`microfair.qc.metrics` are computed tile by tile and summed
inside the task (:mod:`microfair.qc.tiled`: in one pass over the block, the same numbers). Only the task count
changes (about 4 per block instead of ~5 per tile), which was a large part of the QC's cost in the conversion.
"""

from __future__ import annotations

import dask.array as da
import numpy as np

from microfair.qc.metrics import PLANE_FIELDS, KeySpace, key_space
from microfair.qc.reduce import SPLIT_EVERY, QcGraph, extrema
from microfair.qc.tiled import channel_stats_tiled, plane_stats_tiled


def _channel_block(block: np.ndarray, space: KeySpace, tile: int) -> np.ndarray:
    return channel_stats_tiled(block, space, tile)[None, None, None, None, None, :]


def _plane_block(block: np.ndarray, tile: int) -> np.ndarray:
    return plane_stats_tiled(block, tile)[:, :, :, None, None, :]


def block_qc_graph(level0: da.Array, thumb: da.Array, tile: int) -> QcGraph:
    """``qc_graph(level0.rechunk(tile chunks), thumb)``, computed one block of ``level0`` per task.

    Every block of ``level0`` (T, C, Z, Y, X) must hold one channel and whole ``tile`` x ``tile`` tiles
    (but at the right and bottom edges).
    """
    if any(c != 1 for c in level0.chunks[1]):
        level0 = level0.rechunk({1: 1})
    for sizes in level0.chunks[3:]:
        if any(c % tile for c in sizes[:-1]):
            raise ValueError(f"blocks {level0.chunksize} are not whole {tile} x {tile} tiles")
    space = key_space(level0.dtype)
    k = space.vector_length
    per_block = level0.map_blocks(_channel_block, space=space, tile=tile, new_axis=5,
                                  chunks=(*((1,) * len(c) for c in level0.chunks), (k,)), dtype=np.float64)
    channel_vectors = per_block.sum(axis=(0, 2, 3, 4), split_every=SPLIT_EVERY)
    nby, nbx = len(level0.chunks[3]), len(level0.chunks[4])
    plane_chunks = (level0.chunks[0], level0.chunks[1], level0.chunks[2], (1,) * nby, (1,) * nbx, (PLANE_FIELDS,))
    plane = level0.map_blocks(_plane_block, tile=tile, new_axis=5, chunks=plane_chunks, dtype=np.float64)
    plane_sums = plane.sum(axis=(3, 4), split_every=SPLIT_EVERY)
    minimum, maximum, mip = extrema(level0, thumb, space)
    return QcGraph(space, channel_vectors, minimum, maximum, plane_sums, mip)
