"""Slabs: a scene is computed a few planes at a time, so that the dask graph (and its memory) is bounded.

A slab is a (T range, Z range) of whole planes, cut only where a source chunk and a Zarr chunk both end, so
no chunk is read or written by two slabs and the pixels are still read once. The QC values of the slabs
are sums, minima, maxima, per-plane rows and a projection of the first time point; :func:`combine_qc`
adds them up to the values of the whole scene.
"""

from __future__ import annotations

import math
from typing import Any

import dask.array as da
import numpy as np

from microfair.convert.memory import SLAB_CHUNKS


def cut_points(chunks: tuple[int, ...], step: int) -> list[int]:
    """Ends of source chunks that are also multiples of ``step`` (Zarr chunk edges); the last always."""
    ends, pos = [], 0
    for c in chunks:
        pos += c
        if pos % step == 0:
            ends.append(pos)
    if not ends or ends[-1] != pos:
        ends.append(pos)
    return ends


def slabs(data: da.Array, chunk_z: int, chunk_xy: int, max_chunks: int | None = None
          ) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(T range, Z range) slabs of a (T, C, Z, Y, X) array, each of at most ``max_chunks`` Zarr chunks.

    Cut only where a source chunk ends and a Zarr chunk ends (so no chunk is read or written by
    two slabs); whole time points are grouped when they fit, else Z is cut.
    """
    max_chunks = max_chunks or SLAB_CHUNKS  # looked up now: tests lower it
    n_t, n_c, n_z, n_y, n_x = data.shape
    per_plane = n_c * math.ceil(n_y / chunk_xy) * math.ceil(n_x / chunk_xy)
    z_ends = cut_points(data.chunks[2], chunk_z)
    t_ends = cut_points(data.chunks[0], 1)

    def z_groups() -> list[tuple[int, int]]:
        groups, start, prev = [], 0, 0
        for end in z_ends:
            if end > start and prev > start and (end - start) * per_plane > max_chunks:
                groups.append((start, prev))
                start = prev
            prev = end
        groups.append((start, n_z))
        return groups

    out: list[tuple[tuple[int, int], tuple[int, int]]] = []
    whole = n_z * per_plane
    t_start, prev = 0, 0
    for end in t_ends:
        if whole * (end - t_start) > max_chunks and prev > t_start:
            out.append(((t_start, prev), (0, n_z)))
            t_start = prev
        prev = end
        if whole * (end - t_start) > max_chunks:  # one time point does not fit: cut Z
            out += [((t_start, end), zr) for zr in z_groups()]
            t_start = end
    if t_start < n_t:
        out.append(((t_start, n_t), (0, n_z)))
    return out


def combine_qc(parts: list[tuple[tuple[int, int], tuple[int, int], tuple[Any, ...]]], shape: tuple[int, ...]
                ) -> tuple[Any, ...]:
    """The QC values of a whole scene from those of its slabs (sums, min, max, planes, projection)."""
    vectors = minimum = maximum = mip = None
    plane_sums = None
    for (t0, t1), (z0, z1), (vec, lo, hi, planes, proj) in parts:
        vec, lo, hi, planes = (np.asarray(v) for v in (vec, lo, hi, planes))
        if vectors is None:
            vectors, minimum, maximum = vec.copy(), lo.copy(), hi.copy()
            plane_sums = np.zeros((shape[0], shape[1], shape[2], planes.shape[-1]), dtype=planes.dtype)
        else:
            vectors += vec
            minimum, maximum = np.fmin(minimum, lo), np.fmax(maximum, hi)
        plane_sums[t0:t1, :, z0:z1] = planes
        if t0 == 0:
            proj = np.asarray(proj)
            mip = proj if mip is None else np.fmax(mip, proj)
    return vectors, minimum, maximum, plane_sums, mip
