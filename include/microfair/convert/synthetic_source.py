"""A synthetic microscope image of any size whose pixels are made when a chunk is read.

:class:`TexturedVolume` is an array-like (T, C, Z, Y, X) that dask reads chunk by chunk, like a
tiled reader: nothing is held or written to disk beforehand, so a 8 GiB (or 100 GiB) source
costs no memory or disk. The texture is realistic (blurred blobs on a dim background with
photon noise, from :func:`microfair.synthetic.textured_stack`): a bank of textured tiles is made
once per process, and each tile of each plane is one of them, rolled by an offset of its own,
so neighbouring chunks differ and compress like real data.

:func:`synthetic_image` wraps it in a ``bioio.BioImage`` so that :func:`convert_to_zarr` and the
peers read it through the same interface as a file. Used by the bounded-memory test and by
``benchmarks/convert.py --large-gb``.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

import numpy as np

AXES = "TCZYX"


@lru_cache(maxsize=4)
def _tile_bank(tile: int, n: int, seed: int) -> np.ndarray:
    from microfair.synthetic import textured_stack

    bank = textured_stack((n, tile, tile), dtype="uint16", seed=seed)
    bank.setflags(write=False)
    return bank


class TexturedVolume:
    """Array-like uint16 (T, C, Z, Y, X) volume; ``volume[region]`` computes that region.

    :param shape: (T, C, Z, Y, X).
    :param tile: edge of the texture tiles, in pixels.
    :param bank: number of distinct textured tiles.
    :param seed: random seed of the texture.
    :param latency: seconds every read waits first, like a slow network share (tests).
    """

    dtype = np.dtype("uint16")
    ndim = 5

    def __init__(self, shape: tuple[int, int, int, int, int], *, tile: int = 512, bank: int = 8, seed: int = 0,
                 latency: float = 0.0):
        if len(shape) != 5:
            raise ValueError(f"shape must be (T, C, Z, Y, X), got {shape}")
        self.shape = tuple(int(s) for s in shape)
        self.tile, self.bank, self.seed = int(tile), int(bank), int(seed)
        self.latency = float(latency)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def __reduce__(self) -> tuple[Any, ...]:  # pickled to dask workers without the bank
        return (_rebuild, (self.shape, self.tile, self.bank, self.seed, self.latency))

    def _tile(self, plane: int, ty: int, tx: int) -> np.ndarray:
        bank = _tile_bank(self.tile, self.bank, self.seed)
        h = (plane * 1_000_003 + ty * 7_919 + tx * 104_729) & 0x7FFFFFFF
        return np.roll(bank[h % self.bank], shift=((h >> 4) % self.tile, (h >> 12) % self.tile), axis=(0, 1))

    def __getitem__(self, key: Any) -> np.ndarray:
        if self.latency:
            time.sleep(self.latency)
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (5 - len(key))
        ranges = []
        for k, n in zip(key, self.shape):
            if not isinstance(k, slice):
                raise TypeError(f"TexturedVolume takes slices only, not {k!r}")
            start, stop, step = k.indices(n)
            if step != 1:
                raise TypeError("TexturedVolume takes contiguous slices only")
            ranges.append((start, max(start, stop)))
        (t0, t1), (c0, c1), (z0, z1), (y0, y1), (x0, x1) = ranges
        out = np.empty((t1 - t0, c1 - c0, z1 - z0, y1 - y0, x1 - x0), dtype=self.dtype)
        n_t, n_c, n_z = self.shape[:3]
        s = self.tile
        for t in range(t0, t1):
            for c in range(c0, c1):
                for z in range(z0, z1):
                    plane = (t * n_c + c) * n_z + z
                    dst = out[t - t0, c - c0, z - z0]
                    for ty in range(y0 // s, (y1 + s - 1) // s if y1 > y0 else y0 // s):
                        for tx in range(x0 // s, (x1 + s - 1) // s if x1 > x0 else x0 // s):
                            ya, yb = max(y0, ty * s), min(y1, (ty + 1) * s)
                            xa, xb = max(x0, tx * s), min(x1, (tx + 1) * s)
                            dst[ya - y0:yb - y0, xa - x0:xb - x0] = \
                                self._tile(plane, ty, tx)[ya - ty * s:yb - ty * s, xa - tx * s:xb - tx * s]
        return out


def _rebuild(shape: tuple[int, ...], tile: int, bank: int, seed: int, latency: float = 0.0) -> TexturedVolume:
    return TexturedVolume(shape, tile=tile, bank=bank, seed=seed, latency=latency)  # type: ignore[arg-type]


def shape_for_bytes(n_bytes: int, *, channels: int = 2, plane: int = 8192) -> tuple[int, int, int, int, int]:
    """A (1, C, Z, plane, plane) uint16 shape of at least ``n_bytes``."""
    per_z = channels * plane * plane * 2
    return (1, channels, max(1, -(-n_bytes // per_z)), plane, plane)


def synthetic_image(shape: tuple[int, int, int, int, int], *, chunk_xy: int = 2048, tile: int = 512,
                    seed: int = 0, pixel_size_um: float = 0.2, latency: float = 0.0) -> Any:
    """A ``bioio.BioImage`` over a :class:`TexturedVolume`, read in (1, 1, 1, chunk_xy, chunk_xy) chunks."""
    import bioio
    import dask.array as da

    volume = TexturedVolume(shape, tile=tile, seed=seed, latency=latency)
    data = da.from_array(volume, chunks=(1, 1, 1, chunk_xy, chunk_xy),
                         name=f"microfair-synthetic-{seed}-{tile}-{latency}-{chunk_xy}-{shape}",
                         asarray=False, meta=np.empty((0,) * 5, dtype=volume.dtype))
    return bioio.BioImage(data, dim_order=AXES, channel_names=[[f"C{i}" for i in range(shape[1])]],
                          physical_pixel_sizes=(1.0, pixel_size_um, pixel_size_um))
