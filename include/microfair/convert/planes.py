"""The plane engine: a scene converted one *unit* of whole planes per task, through every pyramid level at once.

A unit is the smallest group of whole planes that no other unit shares a source chunk or a Zarr shard with: one
plane when the reader gives plane or tile chunks and ``conversion.chunk_z`` is 1 (``chunk_z`` planes when it is
larger; the three samples of an RGB plane). One task:

1. reads the unit's source chunks once (the reader's own chunks, through the dask graph the reader built, run
   synchronously in the task);
2. computes the QC statistics on it (:mod:`microfair.qc.tiled`: the same per-Zarr-chunk-tile numbers as every
   other path), its extrema, the thumbnail projection and the pixel-exact proof's tile digests
   (:mod:`microfair.convert.proof`);
3. downsamples it level by level in memory (:func:`microfair.convert.pyramid.downsample2`) and writes each level
   with one Zarr call per level, whose region is whole shards (or whole chunks for NGFF 0.4): the codec pipeline
   (zarrs when available, :mod:`microfair.convert.pipeline`) encodes and writes them in one native batch.

Tasks run on a small thread pool (the numpy kernels, the BLAKE3 digests and zarrs' encoder release the GIL), as
many as :func:`microfair.convert.memory.memory_plan` allows for ``conversion.memory_limit_mb``; results are reduced
as they complete, so memory is ``workers x unit`` whatever the file size, with no task graph to hold.

Compared with the dask slab graph (``microfair.convert.writer``), which stays for dask.distributed scale-out and
for planes too large for one task, this removes the per-task scheduling of ~100 tasks per plane (rechunks,
per-level stores, tree reductions): ``benchmarks/convert.py`` and ``docs/conversion-engine.md`` have the figures.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np

from microfair.convert.proof import DIGEST, block_tile_digests
from microfair.convert.pyramid import halve, thumbnail_source
from microfair.convert.slabs import cut_points
from microfair.qc.metrics import PLANE_FIELDS, KeySpace, key_space
from microfair.qc.tiled import GROUP_PIXELS, channel_stats_tiled, plane_stats_tiled

log = logging.getLogger(__name__)

MiB = 1 << 20


@dataclass(frozen=True)
class Unit:
    """Position ranges (start, end) along T, C and Z of one unit, and the source block-index ranges that hold it."""

    t: tuple[int, int]
    c: tuple[int, int]
    z: tuple[int, int]
    blocks: tuple[tuple[int, int], tuple[int, int], tuple[int, int]]

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.t[1] - self.t[0], self.c[1] - self.c[0], self.z[1] - self.z[0])


def _ranges(chunks: tuple[int, ...], ends: list[int]) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(position range, block-index range) of each piece between consecutive ``ends`` (chunk boundaries)."""
    edges = np.cumsum((0, *chunks))
    starts = [0, *ends[:-1]]
    first = np.searchsorted(edges, starts)
    last = np.searchsorted(edges, ends)
    return [((a, b), (int(i), int(j))) for a, b, i, j in zip(starts, ends, first, last)]


def units(data: Any, chunk_z: int) -> list[Unit]:
    """The units of a (T, C, Z, Y, X) dask array: cut along T and C wherever a source chunk ends, along Z where a
    source chunk and a ``chunk_z`` Zarr chunk both end; Y and X whole."""
    ts = _ranges(data.chunks[0], cut_points(data.chunks[0], 1))
    cs = _ranges(data.chunks[1], cut_points(data.chunks[1], 1))
    zs = _ranges(data.chunks[2], cut_points(data.chunks[2], chunk_z))
    return [Unit(t, c, z, (bt, bc, bz)) for t, bt in ts for c, bc in cs for z, bz in zs]


def unit_bytes(data: Any, chunk_z: int) -> int:
    """Bytes of the largest unit of ``data``."""
    n_t, n_c = max(data.chunks[0]), max(data.chunks[1])
    z_ends = cut_points(data.chunks[2], chunk_z)
    n_z = max(b - a for a, b in zip([0, *z_ends[:-1]], z_ends))
    return int(n_t * n_c * n_z * data.shape[3] * data.shape[4] * np.dtype(data.dtype).itemsize)


def per_unit_mb(unit: int, dtype: np.dtype, tile: int, band: int | None = None) -> float:
    """Memory one task holds: the unit and its smaller levels (1/3 more), one band of shards being encoded and one
    being read back (``band`` bytes each, at most the unit), the QC temporaries on one group of tiles (~24 bytes a
    pixel, :mod:`microfair.qc.tiled`), plus 8 MB."""
    group = tile * tile * max(1, GROUP_PIXELS // (tile * tile))
    band = unit if band is None else min(unit, band)
    return (unit * 1.34 + 2 * band + group * 24) / MiB + 8


class _Reader:
    """The source's blocks, each computed synchronously inside a task from its own small subgraph.

    The reader's graph is optimised and materialised once; a block's subgraph (its read and the few reshape or
    getitem tasks above it) is collected from the dependencies, so reading a block costs its own tasks only, not a
    pass over the graph of the whole scene (which ``dask.compute`` of a delayed block would make: ~14 ms a block
    for 10,000 planes).
    """

    def __init__(self, data: Any) -> None:
        from dask.core import flatten

        keys = list(flatten(data.__dask_keys__()))
        self.graph = dict(data.__dask_optimize__(data.__dask_graph__(), keys))
        self.name = data.name
        self.numblocks = data.numblocks
        self.starts = [np.cumsum((0, *c)) for c in data.chunks]
        self.dtype = np.dtype(data.dtype)
        self.yx = tuple(int(s) for s in data.shape[3:])

    def block(self, index: tuple[int, ...]) -> np.ndarray:
        from dask.core import get_dependencies
        from dask.local import get_sync

        key = (self.name, *index)
        sub: dict[Any, Any] = {}
        todo = [key]
        while todo:
            k = todo.pop()
            if k not in sub:
                sub[k] = self.graph[k]
                todo.extend(get_dependencies(self.graph, k))
        return np.asarray(get_sync(sub, key))

    def read(self, u: Unit) -> np.ndarray:
        (bt0, bt1), (bc0, bc1), (bz0, bz1) = u.blocks
        index = [(it, ic, iz, iy, ix) for it in range(bt0, bt1) for ic in range(bc0, bc1) for iz in range(bz0, bz1)
                 for iy in range(self.numblocks[3]) for ix in range(self.numblocks[4])]
        if len(index) == 1:
            return np.ascontiguousarray(self.block(index[0]))
        out = np.empty((*u.shape, *self.yx), dtype=self.dtype)
        origin = (u.t[0], u.c[0], u.z[0], 0, 0)
        for idx in index:
            part = self.block(idx)
            at = [int(self.starts[a][i]) - o for a, (i, o) in enumerate(zip(idx, origin))]
            out[tuple(slice(s, s + n) for s, n in zip(at, part.shape))] = part
        return out


def write_level(array: Any, region: tuple[slice, ...], block: np.ndarray) -> int:
    """Write one band of one level of a unit (whole shards or chunks) into its Zarr array; returns the bytes."""
    array[region] = block
    return int(block.nbytes)


def bands(height: int, step: int) -> list[tuple[int, int]]:
    """Row ranges of ``step`` rows (a write block's height) covering ``height``."""
    step = max(1, int(step))
    return [(y, min(y + step, height)) for y in range(0, height, step)]


@dataclass
class SceneValues:
    """What a scene's conversion computes besides the pixels: the QC values of ``QcGraph.lazy`` and the digests."""

    written: int
    qc: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    digests: np.ndarray  # (T, C, Z, tiles Y, tiles X, 32)
    space: KeySpace
    units: int
    workers: int


class _Cancelled(Exception):
    """A unit stopped because another one failed."""


def _earliest_failure(failed: Future, running: set[Future], order: dict[Future, int]) -> BaseException:
    """The error of the first unit (in plane order) that failed, once the running units have stopped: with several
    bad planes, the message names the first, whatever thread finished first."""
    wait(running)
    errors = [(order[f], f.exception()) for f in (failed, *running) if not f.cancelled()]
    real = [(i, e) for i, e in errors if e is not None and not isinstance(e, _Cancelled)]
    return min(real, key=lambda ie: ie[0])[1] if real else failed.exception()  # type: ignore[return-value]


class PlaneEngine:
    """Converts one scene unit by unit (see the module docstring)."""

    def __init__(self, data: Any, arrays: list[Any], *, chunk_z: int, tile: int, thumb_size: int, workers: int,
                 uid: str = "conversion", proof: Any = None, scene: int = 0,
                 blocks: list[tuple[int, ...]] | None = None) -> None:
        """``blocks``: the write block (shard, or tile of whole chunks) of every level; each level is written in
        bands of one block row, so a band's encoded shards, not the whole level's, are in memory at once."""
        self.data, self.arrays, self.tile, self.thumb_size = data, arrays, int(tile), int(thumb_size)
        self.band_rows = [int(b[-2]) for b in blocks] if blocks else [int(a.shape[-2]) for a in arrays]
        self.workers = max(1, int(workers))
        self.units = units(data, chunk_z)
        self.space = key_space(data.dtype)
        self.who = uid
        self.proof, self.scene = proof, scene
        self._stop = threading.Event()

    def _process(self, u: Unit, reader: _Reader) -> tuple[Unit, np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                         np.ndarray | None, np.ndarray, int]:
        if self._stop.is_set():
            raise _Cancelled()
        block = reader.read(u)
        floats = self.space.is_float
        vec = np.stack([channel_stats_tiled(block[:, i], self.space, self.tile) for i in range(block.shape[1])])
        planes = plane_stats_tiled(block, self.tile)
        # fmin/fmax skip NaN without the all-NaN warning of nanmin/nanmax (a unit is often one plane)
        lo = (np.fmin if floats else np.minimum).reduce(block, axis=(0, 2, 3, 4))
        hi = (np.fmax if floats else np.maximum).reduce(block, axis=(0, 2, 3, 4))
        digests = block_tile_digests(block, self.tile)
        levels = [block]
        for _ in self.arrays[1:]:
            levels.append(halve(levels[-1]))  # in bands of rows: no plane-sized temporaries
        mip = None
        if u.t[0] == 0:
            mip = (np.fmax if floats else np.maximum).reduce(thumbnail_source(levels, self.thumb_size, halve)[0], axis=1)
        lead = (slice(*u.t), slice(*u.c), slice(*u.z))
        written = 0
        for lvl, arr, rows in zip(levels, self.arrays, self.band_rows):
            for y0, y1 in bands(lvl.shape[-2], rows):
                if self._stop.is_set():
                    raise _Cancelled()
                written += write_level(arr, (*lead, slice(y0, y1)), lvl[..., y0:y1, :])
            if arr is self.arrays[0] and self.proof is not None:  # read level 0 back while it is in the page cache
                self.proof.check_unit(self.scene, u.t, u.c, u.z, digests)
        return u, vec, lo, hi, planes, mip, digests, written

    def run(self) -> SceneValues:
        n_t, n_c, n_z, n_y, n_x = (int(s) for s in self.data.shape)
        k = self.space.vector_length
        vectors = np.zeros((n_c, k), dtype=np.float64)
        minimum: np.ndarray | None = None
        maximum: np.ndarray | None = None
        plane_sums = np.zeros((n_t, n_c, n_z, PLANE_FIELDS), dtype=np.float64)
        digests = np.zeros((n_t, n_c, n_z, math.ceil(n_y / self.tile), math.ceil(n_x / self.tile), DIGEST),
                           dtype=np.uint8)
        mip: np.ndarray | None = None
        written = 0
        reader = _Reader(self.data)
        pending = list(reversed(list(enumerate(self.units))))
        window = 2 * self.workers
        order: dict[Future, int] = {}
        with ThreadPoolExecutor(self.workers, thread_name_prefix="microfair-plane") as pool:
            running: set[Future] = set()
            try:
                while pending or running:
                    while pending and len(running) < window:
                        i, unit = pending.pop()
                        fut = pool.submit(self._process, unit, reader)
                        order[fut] = i
                        running.add(fut)
                    done, running = wait(running, return_when=FIRST_COMPLETED)
                    for fut in sorted(done, key=order.__getitem__):
                        if fut.exception() is not None:
                            self._stop.set()
                            for other in running:
                                other.cancel()
                            raise _earliest_failure(fut, running, order)
                        u, vec, lo, hi, planes, proj, dig, w = fut.result()
                        del order[fut]  # the future holds its result (~0.7 MB of QC vectors) while referenced
                        (c0, c1), (t0, t1), (z0, z1) = u.c, u.t, u.z
                        vectors[c0:c1] += vec
                        if minimum is None:
                            minimum = np.empty(n_c, dtype=lo.dtype)
                            maximum = np.empty(n_c, dtype=hi.dtype)
                            seen = np.zeros(n_c, dtype=bool)
                        for i, c in enumerate(range(c0, c1)):
                            minimum[c] = lo[i] if not seen[c] else np.fmin(minimum[c], lo[i])
                            maximum[c] = hi[i] if not seen[c] else np.fmax(maximum[c], hi[i])
                            seen[c] = True
                        plane_sums[t0:t1, c0:c1, z0:z1] = planes
                        digests[t0:t1, c0:c1, z0:z1] = dig
                        if proj is not None:
                            if mip is None:
                                mip = np.zeros((n_c, *proj.shape[1:]), dtype=proj.dtype)
                                mip_seen = np.zeros(n_c, dtype=bool)
                            for i, c in enumerate(range(c0, c1)):
                                mip[c] = proj[i] if not mip_seen[c] else np.fmax(mip[c], proj[i])
                                mip_seen[c] = True
                        written += w
            except BaseException:
                self._stop.set()  # tasks not started return at once; running ones stop before their next band
                for fut in running:
                    fut.cancel()
                raise
        assert minimum is not None and maximum is not None and mip is not None
        return SceneValues(written, (vectors, minimum, maximum, plane_sums, mip), digests, self.space,
                           len(self.units), self.workers)


def engine_workers(limit_mb: int, unit: int, dtype: np.dtype, tile: int, cores: int | None = None,
                   band: int | None = None) -> int:
    """Tasks at once within ``limit_mb`` (0 when even one unit does not fit: the dask path tiles the plane)."""
    from microfair.convert.memory import BASELINE_MB

    per = per_unit_mb(unit, dtype, tile, band)
    room = limit_mb - BASELINE_MB
    return max(0, min(cores or os.cpu_count() or 1, int(room // per) if room > 0 else 0))
