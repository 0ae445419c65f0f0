"""The QC reductions as lazy dask arrays, shared by conversion, ``qc_image`` and ``qc_from_zarr``.

:func:`qc_graph` adds, to the graph of a level-0 array (T, C, Z, Y, X) chunked one channel
per block, the per-channel statistics, per-plane focus sums, exact min/max and a
max-intensity projection for thumbnails. Computed together with the Zarr stores, dask
shares the source-read tasks, so the source is read once. :func:`scene_qc` turns the
computed results into a :class:`~microfair.qc.report.SceneQc`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np

from microfair.config.core import QcThresholds
from microfair.qc.metrics import PLANE_FIELDS, ChannelStats, KeySpace, channel_block_stats, key_space, plane_block_stats
from microfair.qc.report import ChannelQc, SceneQc, channel_qc

#: At most this many blocks are summed at once in the tree reductions (bounds memory).
SPLIT_EVERY = 8


def _channel_block(block: np.ndarray, space: KeySpace) -> np.ndarray:
    return channel_block_stats(block, space)[None, None, None, None, None, :]


def _plane_block(block: np.ndarray) -> np.ndarray:
    return plane_block_stats(block)[:, :, :, None, None, :]


@dataclass
class QcGraph:
    """Lazy QC reductions of one scene; ``lazy`` goes into the same ``dask.compute`` as the stores."""

    space: KeySpace
    channel_vectors: da.Array  # (C, K)
    minimum: da.Array  # (C,)
    maximum: da.Array  # (C,)
    plane_sums: da.Array  # (T, C, Z, PLANE_FIELDS)
    mip: da.Array  # (C, y, x), first time point

    @property
    def lazy(self) -> tuple[da.Array, ...]:
        return (self.channel_vectors, self.minimum, self.maximum, self.plane_sums, self.mip)


def extrema(level0: da.Array, thumb: da.Array, space: KeySpace) -> tuple[da.Array, da.Array, da.Array]:
    """Per-channel minimum and maximum of ``level0`` (NaN-aware for floats), and the thumbnail's Z MIP."""
    if space.is_float:
        return (da.nanmin(level0, axis=(0, 2, 3, 4), split_every=SPLIT_EVERY),
                da.nanmax(level0, axis=(0, 2, 3, 4), split_every=SPLIT_EVERY), da.nanmax(thumb[0], axis=1))
    return (level0.min(axis=(0, 2, 3, 4), split_every=SPLIT_EVERY),
            level0.max(axis=(0, 2, 3, 4), split_every=SPLIT_EVERY), thumb[0].max(axis=1))


def qc_graph(level0: da.Array, thumb: da.Array) -> QcGraph:
    """QC reductions over ``level0`` (T, C, Z, Y, X); ``thumb`` is a small level for the projection."""
    if level0.ndim != 5:
        raise ValueError(f"expected a (T, C, Z, Y, X) array, got shape {level0.shape}")
    if any(c != 1 for c in level0.chunks[1]):
        level0 = level0.rechunk({1: 1})
    space = key_space(level0.dtype)
    k = space.vector_length
    per_block = level0.map_blocks(_channel_block, space=space, new_axis=5, chunks=(1, 1, 1, 1, 1, k),
                                  dtype=np.float64)
    channel_vectors = per_block.sum(axis=(0, 2, 3, 4), split_every=SPLIT_EVERY)
    nby, nbx = len(level0.chunks[3]), len(level0.chunks[4])
    plane_chunks = (level0.chunks[0], level0.chunks[1], level0.chunks[2], (1,) * nby, (1,) * nbx, (PLANE_FIELDS,))
    plane = level0.map_blocks(_plane_block, new_axis=5, chunks=plane_chunks, dtype=np.float64)
    plane_sums = plane.sum(axis=(3, 4), split_every=SPLIT_EVERY)
    minimum, maximum, mip = extrema(level0, thumb, space)
    return QcGraph(space, channel_vectors, minimum, maximum, plane_sums, mip)


def scene_qc(graph: QcGraph | KeySpace, computed: tuple[Any, ...], *, index: int, name: str, channel_names: list[str],
             channel_colors: list[str], shape: tuple[int, ...], thresholds: QcThresholds,
             significant_bits: int | None = None) -> SceneQc:
    """Build the :class:`SceneQc` from the computed values of ``graph.lazy`` (same order).

    ``significant_bits``: the scene's bit depth from its metadata (OME ``Pixels@SignificantBits``), if known.
    """
    space = graph.space if isinstance(graph, QcGraph) else graph
    vectors, minimum, maximum, plane_sums, mip = (np.asarray(v) for v in computed)
    channels: list[ChannelQc] = []
    for c in range(vectors.shape[0]):
        stats = ChannelStats.from_vector(vectors[c], space, float(minimum[c]), float(maximum[c]))
        channels.append(channel_qc(c, channel_names[c], channel_colors[c], stats, plane_sums[:, c],
                                   thresholds, scene=index, significant_bits=significant_bits))
    dims = dict(zip("tczyx", (int(s) for s in shape)))
    return SceneQc(index=index, name=name, shape=dims, dtype=str(space.dtype), channels=channels, mip=mip,
                   significant_bits=significant_bits)
