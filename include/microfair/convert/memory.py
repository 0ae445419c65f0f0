"""How much memory a conversion needs, and how many workers fit ``conversion.memory_limit_mb``.

A conversion holds, per worker, the source chunk it is reading and the few Zarr chunks made
from it (the level-0 chunk, its downsampled blocks, the compressed copy) plus the temporaries of
the QC reductions on one Zarr chunk. The dask graph itself is bounded by computing a scene in
*slabs* of at most ``SLAB_CHUNKS`` level-0 chunks (whole planes, cut at source-chunk and
``chunk_z`` boundaries, so no chunk is read or written twice). So:

    peak ≈ BASELINE_MB + workers × (2 × source chunk + 4 × write block + QC group pixels × 24 + 6 MB)

(a write block is one shard, or a tile of whole Zarr chunks of about ``conversion.shard_target_bytes``;
the 24 bytes per pixel are the QC temporaries on one group of Zarr-chunk tiles, ``microfair.qc.tiled``)

independent of the file size. With the threaded scheduler, ``workers`` is the number of threads:
as many as there are cores, but no more than ``(memory_limit_mb − BASELINE_MB) / per worker``
(at least one). With a dask cluster, the workers' own memory limits apply (``DaskHook`` splits
``memory_limit_mb`` between the workers of a local cluster).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: Interpreter, numpy/dask/zarr/bioio and one slab's graph (measured: 350-450 MB).
BASELINE_MB = 450
#: Level-0 Zarr chunks computed at once (bounds the size of the dask graph).
SLAB_CHUNKS = 1024
#: QC vectors (histogram + noise histogram, ~0.7 MB for 16 bit) summed 8 at a time, per worker.
QC_MB = 6
MiB = 1 << 20


@dataclass(frozen=True)
class MemoryPlan:
    """The memory budget of one conversion and what it allows."""

    limit_mb: int
    source_chunk_mb: float
    zarr_chunk_mb: float
    per_worker_mb: float
    workers: int
    cores: int
    fits: bool  # False: even one worker exceeds the limit (the source chunks are too large)

    @property
    def expected_peak_mb(self) -> float:
        return BASELINE_MB + self.workers * self.per_worker_mb

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "expected_peak_mb": round(self.expected_peak_mb, 1)}


def per_worker_mb(source_chunk_bytes: int, zarr_chunk: tuple[int, ...], dtype: np.dtype,
                  block: tuple[int, ...] | None = None) -> float:
    from microfair.qc.tiled import GROUP_PIXELS

    # the QC kernels work on groups of whole Zarr-chunk tiles of about GROUP_PIXELS (microfair.qc.tiled)
    tile = math.prod(zarr_chunk[-2:])
    pixels = math.prod(zarr_chunk[:-2]) * tile * max(1, GROUP_PIXELS // tile)
    item = np.dtype(dtype).itemsize
    block_bytes = math.prod(block or zarr_chunk) * item
    return (2 * source_chunk_bytes + 4 * block_bytes + pixels * 24) / MiB + QC_MB


def memory_plan(limit_mb: int, source_chunk_bytes: int, zarr_chunk: tuple[int, ...], dtype: np.dtype,
                cores: int | None = None, block: tuple[int, ...] | None = None) -> MemoryPlan:
    """Workers (threads) that fit ``limit_mb`` for these chunks; see the module docstring."""
    n_cores = cores or os.cpu_count() or 1
    per = per_worker_mb(source_chunk_bytes, zarr_chunk, dtype, block)
    room = limit_mb - BASELINE_MB
    fitting = int(room // per) if room > 0 else 0
    return MemoryPlan(limit_mb=limit_mb, source_chunk_mb=round(source_chunk_bytes / MiB, 2),
                      zarr_chunk_mb=round(math.prod(zarr_chunk) * np.dtype(dtype).itemsize / MiB, 2),
                      per_worker_mb=round(per, 1), workers=max(1, min(n_cores, fitting)), cores=n_cores,
                      fits=fitting >= 1)
