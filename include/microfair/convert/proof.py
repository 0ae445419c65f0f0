"""The pixel-exact proof of a conversion: level 0, read back from the written Zarr, equals the source plane by plane.

How it works:

- **Source digests, in the same pass.** :func:`tile_digest_graph` maps every block of level 0 (the source as read,
  re-chunked to write blocks, before any store) to the BLAKE3 digests of its Zarr-chunk tiles. It rides in the same
  ``compute`` as the stores and the QC reductions (like :func:`microfair.convert.qcblocks.block_qc_graph`), so the
  source is still read once. The result is a small uint8 array (T, C, Z, tiles in Y, tiles in X, 32).
- **Read back, before publication.** :meth:`PixelProof.verify` reads level 0 of the temporary Zarr, block by block
  (bounded memory), for every plane or for ``conversion.verify_planes`` planes per scene (evenly spaced over the
  (T, C, Z) planes, first and last included), and digests it on the same tiling.
- **Plane digest.** BLAKE3 over the position-keyed tile digests (tile row, tile column, digest) on the Zarr-chunk
  tiling, so a plane whose tiles were written by different tasks still has one digest, and a transposed, flipped or
  shuffled plane, or two swapped tiles, give another. A tile digest covers the dtype (little-endian), the tile shape
  and the pixels, so values are compared, not the byte order the reader happened to use.
- A mismatch raises :class:`PixelMismatch` naming the scene, t, c, z (and the tiles that differ); the writer turns it
  into a ``ConversionError`` and removes the temporary, so nothing reaches the final path.

For the engine (writer.py) -- what must keep being called, whatever the engine looks like:

1. ``proof = PixelProof(settings.verify_planes, uid)`` once per conversion;
2. ``proof.add_scene(index, name, level0_zarr_array, level0_block_shape, tile)`` once per scene, where ``tile`` is the
   Zarr chunk edge in Y/X (``plan.chunks[-1]``) and ``level0_block_shape`` the write block of level 0;
3. per slab, ``tile_digest_graph(level0_dask_array, tile)`` computed in the SAME compute as the stores (not a second
   read of the source), and its result handed to ``proof.add_digests(index, (t0, z0), digests)``; blocks must be whole
   ``tile`` x ``tile`` tiles but at the right and bottom edges (as for the QC blocks);
4. ``verdict = proof.verify(compute)`` after every scene is written and BEFORE validation/publication, with
   ``compute(*lazy) -> tuple`` running dask objects on the conversion's scheduler; ``verdict`` goes into
   ``ConversionResult.extra["pixel_proof"]``.

The plane engine (``microfair.convert.planes``) digests each unit of planes in its task and calls
``proof.check_unit`` right after writing its level 0, so the read-back runs in parallel with the conversion and the
unit is still in the page cache; :meth:`PixelProof.verify` then reads back only what was not checked yet.

The fault-injection tests (tests/unit/test_pixel_proof.py) wrap ``writer.store_level(level, target, offset)`` (the
dask path) and ``planes.write_level(array, region, block)`` (the plane engine) to write a transposed, flipped or
shuffled level 0; keep those names and signatures or update those tests.
"""

from __future__ import annotations

import functools
import logging
import math
import struct
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import dask
import dask.array as da
import numpy as np
from blake3 import blake3

log = logging.getLogger(__name__)

ALGORITHM = "BLAKE3"
DIGEST = 32  # bytes of a BLAKE3 digest
PLANE_KEY = b"microfair plane digest v1"
READ_BACK_TASKS = 2048  # read-back tasks per compute (planes are batched to stay under it)


class PixelMismatch(ValueError):
    """Level 0 as written differs from the source; the message names the plane (scene, t, c, z)."""


def _little_endian(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))  # no copy when already little-endian


def tile_digest(tile: np.ndarray) -> bytes:
    """BLAKE3 of one (Y, X) tile: its dtype (little-endian), its shape and its pixels."""
    tile = _little_endian(tile)
    h = blake3(f"{tile.dtype.str}:{tile.shape[0]}x{tile.shape[1]}:".encode())
    h.update(memoryview(tile).cast("B"))
    return h.digest()


def block_tile_digests(block: np.ndarray, tile: int) -> np.ndarray:
    """Digests of the ``tile`` x ``tile`` tiles of every plane of a (..., Y, X) block: (..., tiles Y, tiles X, 32)."""
    *lead, ny, nx = block.shape
    nty, ntx = math.ceil(ny / tile), math.ceil(nx / tile)
    out = np.empty((*lead, nty, ntx, DIGEST), dtype=np.uint8)
    for idx in np.ndindex(*lead):
        plane = block[idx]
        for iy in range(nty):
            for ix in range(ntx):
                d = tile_digest(plane[iy * tile:(iy + 1) * tile, ix * tile:(ix + 1) * tile])
                out[(*idx, iy, ix)] = np.frombuffer(d, dtype=np.uint8)
    return out


def tile_digest_graph(level0: da.Array, tile: int) -> da.Array:
    """Lazy tile digests of a (T, C, Z, Y, X) level 0, one task per block: (T, C, Z, tiles Y, tiles X, 32) uint8.

    Every block must hold whole ``tile`` x ``tile`` tiles (but at the right and bottom edges), so that the tiling
    is the same as the read-back's, whatever the block shape.
    """
    for sizes in level0.chunks[3:]:
        if any(c % tile for c in sizes[:-1]):
            raise ValueError(f"blocks {level0.chunksize} are not whole {tile} x {tile} tiles")
    chunks = (*level0.chunks[:3], *(tuple(math.ceil(c / tile) for c in sizes) for sizes in level0.chunks[3:]),
              (DIGEST,))
    return level0.map_blocks(block_tile_digests, tile=tile, new_axis=5, chunks=chunks, dtype=np.uint8)


def plane_digest(tiles: np.ndarray, dtype: np.dtype, shape: tuple[int, int], tile: int) -> bytes:
    """One plane's digest from its (tiles Y, tiles X, 32) tile digests, each keyed by its position."""
    h = blake3(PLANE_KEY)
    h.update(f":{np.dtype(dtype).newbyteorder('<').str}:{shape[0]}x{shape[1]}:{tile}:".encode())
    for iy in range(tiles.shape[0]):
        for ix in range(tiles.shape[1]):
            h.update(struct.pack("<II", iy, ix))
            h.update(tiles[iy, ix].tobytes())
    return h.digest()


def sample_planes(n_planes: int, verify: Literal["all"] | int) -> list[int]:
    """Flat (T, C, Z) plane indices to read back: all, or ``verify`` evenly spaced ones (first and last included)."""
    if verify == "all" or int(verify) >= n_planes:
        return list(range(n_planes))
    return sorted({int(round(i)) for i in np.linspace(0, n_planes - 1, int(verify))})


#: Planes per scene that :meth:`PixelProof.verify` reads again through zarr-python after the plane engine read
#: them back through zarrs (first and last).
CROSS_CHECK = 2


def in_pass_pipeline() -> str:
    """The codec pipeline of the plane engine's read-back: ``zarrs`` (GIL-free decoding, so it runs beside the
    conversion instead of after it) when installed, unless ``MICROFAIR_PROOF_PIPELINE=zarr-python``."""
    import importlib.util
    import os

    wanted = os.environ.get("MICROFAIR_PROOF_PIPELINE", "").strip().lower()
    if wanted in ("zarr", "zarr-python") or importlib.util.find_spec("zarrs") is None:
        return "zarr-python"
    return "zarrs"


@functools.lru_cache(maxsize=16)
def _open_level(root: str, path: str, pipeline: str = "zarr-python") -> Any:
    """Level 0 opened afresh, read-only, from a new store (not the writer's array object, so the read-back does not
    share the writer's state or caches), with zarr-python's own codec pipeline or with zarrs."""
    import zarr

    from microfair.convert.pipeline import CONFIG_LOCK, ZARRS

    options: dict[str, object] = {"codec_pipeline.path": ZARRS} if pipeline == "zarrs" else {}
    with CONFIG_LOCK, zarr.config.set(options):  # called from the plane engine's threads: one at a time
        return zarr.open_array(zarr.storage.LocalStore(root, read_only=True), path=path, mode="r")


def _read_back_block(where: Any, t: int, c: int, z: int, ys: tuple[int, int], xs: tuple[int, int], tile: int,
                     pipeline: str = "zarr-python") -> np.ndarray:
    arr = _open_level(*where, pipeline) if isinstance(where, tuple) else where
    try:
        block = np.asarray(arr[t, c, z, ys[0]:ys[1], xs[0]:xs[1]])
    except Exception as err:  # a torn shard or chunk: zarr's checksum or decoder refuses it
        raise PixelMismatch(f"pixel-exact proof failed: level 0 {arr.path} t={t} c={c} z={z} y {ys[0]}:{ys[1]} "
                            f"x {xs[0]}:{xs[1]} cannot be read back as written ({type(err).__name__}: {err})") from err
    return block_tile_digests(block, tile)


@dataclass
class _Scene:
    index: int
    name: str
    array: Any  # the level-0 Zarr array of the temporary
    where: Any  # what the read-back opens: (store root, array path) for a local store, else the array itself
    block: tuple[int, ...]
    tile: int
    shape: tuple[int, ...]
    dtype: np.dtype
    digests: np.ndarray  # (T, C, Z, tiles Y, tiles X, 32)
    filled: np.ndarray  # (T, C, Z) bool: the source digest is there
    sample: np.ndarray  # (T, C, Z) bool: the plane is to be read back
    checked: np.ndarray  # (T, C, Z) bool: read back identical already, in the conversion pass (plane engine)
    plane_digests: list[bytes] = field(default_factory=list)


class PixelProof:
    """Collects the source digests of a conversion and checks level 0 against them (see the module docstring)."""

    def __init__(self, verify_planes: Literal["all"] | int = "all", uid: str | None = None) -> None:
        self.verify_planes = verify_planes
        self.who = uid or "conversion"
        self.scenes: dict[int, _Scene] = {}
        self.pipeline = in_pass_pipeline()

    def add_scene(self, index: int, name: str, array: Any, block: tuple[int, ...], tile: int) -> None:
        shape = tuple(int(s) for s in array.shape)
        nty, ntx = math.ceil(shape[3] / tile), math.ceil(shape[4] / tile)
        root = getattr(array.store, "root", None)
        where = (str(root), str(array.path)) if root is not None else array
        sample = np.zeros(int(np.prod(shape[:3])), dtype=bool)
        sample[sample_planes(sample.size, self.verify_planes)] = True
        self.scenes[index] = _Scene(index, name, array, where, tuple(block), int(tile), shape, np.dtype(array.dtype),
                                    np.zeros((*shape[:3], nty, ntx, DIGEST), dtype=np.uint8),
                                    np.zeros(shape[:3], dtype=bool), sample.reshape(shape[:3]),
                                    np.zeros(shape[:3], dtype=bool))

    def check_unit(self, index: int, t: tuple[int, int], c: tuple[int, int], z: tuple[int, int],
                   source: np.ndarray) -> int:
        """Read back, right after level 0 of a unit of planes was written, those of its planes that are in the sample,
        and compare them with ``source`` (the unit's tile digests, computed from the pixels as read); raises
        :class:`PixelMismatch` naming the plane. The read goes through a fresh read-only zarr-python array, as in
        :meth:`verify`, which then skips these planes. Returns how many planes were read back."""
        s = self.scenes[index]
        n = 0
        rows = max(s.tile, s.block[-2] // s.tile * s.tile)  # one write-block row at a time (whole shards: fastest)
        for i, j, k in np.ndindex(t[1] - t[0], c[1] - c[0], z[1] - z[0]):
            plane = (t[0] + i, c[0] + j, z[0] + k)
            if not s.sample[plane]:
                continue
            got = np.concatenate([_read_back_block(s.where, *plane, (y0, min(y0 + rows, s.shape[3])),
                                                   (0, s.shape[4]), s.tile, self.pipeline)
                                  for y0 in range(0, s.shape[3], rows)], axis=0)
            self._compare(s, plane, got, source[i, j, k])
            s.checked[plane] = True
            n += 1
        return n

    def add_digests(self, index: int, offset: tuple[int, int], digests: np.ndarray) -> None:
        """The computed :func:`tile_digest_graph` of the slab starting at (t0, z0) of scene ``index``."""
        s, (t0, z0) = self.scenes[index], offset
        digests = np.asarray(digests)
        t1, z1 = t0 + digests.shape[0], z0 + digests.shape[2]
        s.digests[t0:t1, :, z0:z1] = digests
        s.filled[t0:t1, :, z0:z1] = True

    def _lazy_read_back(self, s: _Scene, planes: list[tuple[int, int, int]]) -> tuple[list[Any], list[int], list[int]]:
        """One task per (plane, level-0 block): the tile digests of that block as written; flat, row-major."""
        by, bx = s.block[-2], s.block[-1]
        ys, xs = list(range(0, s.shape[3], by)), list(range(0, s.shape[4], bx))
        tasks = [dask.delayed(_read_back_block, pure=False)(s.where, t, c, z, (y0, min(y0 + by, s.shape[3])),
                                                            (x0, min(x0 + bx, s.shape[4])), s.tile)
                 for t, c, z in planes for y0 in ys for x0 in xs]
        return tasks, ys, xs

    def verify(self, compute: Callable[..., tuple[Any, ...]] | None = None) -> dict[str, Any]:
        """Read level 0 back (every plane or the sample) and compare; raises :class:`PixelMismatch` on a difference.

        :param compute: runs dask objects and returns their values (the conversion's scheduler); ``dask.compute``
            when None.
        :returns: the verdict (``verified: N/N planes identical``, mode, algorithm, per-scene counts and digests).
        """
        compute = compute or (lambda *objs: dask.compute(*objs))
        scenes_out = [self._verify_scene(s, compute) for s in self.scenes.values()]
        checked = sum(s["checked"] for s in scenes_out)
        planes = sum(s["planes"] for s in scenes_out)
        return {
            "verified": f"{checked}/{checked} planes identical",
            "verdict": f"verified: {checked}/{checked} planes identical"
                       + ("" if checked == planes else f" (a sample of {checked} of {planes})"),
            "passed": True, "identical": checked, "checked": checked, "planes": planes,
            "mode": "all" if checked == planes else "sample", "verify_planes": self.verify_planes, "level": 0,
            "algorithm": ALGORITHM,
            "method": (f"{ALGORITHM} per Zarr-chunk tile (dtype, shape, pixels), keyed by tile position, per plane; "
                       "source digested in the conversion pass, level 0 read back before publication"),
            "tile": sorted({s.tile for s in self.scenes.values()}),
            "scenes": scenes_out,
        }

    def _verify_scene(self, s: _Scene, compute: Callable[..., tuple[Any, ...]]) -> dict[str, Any]:
        if s.array.shape != s.shape or np.dtype(s.array.dtype).newbyteorder("<") != s.dtype.newbyteorder("<"):
            raise PixelMismatch(f"scene {s.index} ({s.name}): level 0 is {s.array.dtype} {s.array.shape}, "
                                f"the source {s.dtype} {s.shape}")
        if not s.filled.all():
            t, c, z = (int(i) for i in np.argwhere(~s.filled)[0])
            raise PixelMismatch(f"scene {s.index} ({s.name}): no source digest for t={t} c={c} z={z} "
                                "(the plane was never converted)")
        n = int(np.prod(s.shape[:3]))
        sampled = [tuple(int(i) for i in np.unravel_index(k, s.shape[:3]))
                   for k in sample_planes(n, self.verify_planes)]
        planes = [p for p in sampled if not s.checked[p]]  # the plane engine read the others back in its pass
        if self.pipeline != "zarr-python" and len(planes) < len(sampled):  # and an independent decoder for a few
            again = [p for p in sampled if s.checked[p]]
            planes += sorted({again[0], again[-1]})[:CROSS_CHECK]
        per_plane = math.ceil(s.shape[3] / s.block[-2]) * math.ceil(s.shape[4] / s.block[-1])
        batch = max(1, READ_BACK_TASKS // per_plane)  # bounded graphs, like the conversion's slabs
        for b in range(0, len(planes), batch):
            group = planes[b:b + batch]
            tasks, ys, xs = self._lazy_read_back(s, group)
            back = compute(*tasks)
            for k, (t, c, z) in enumerate(group):
                blocks = back[k * per_plane:(k + 1) * per_plane]
                got = np.concatenate([np.concatenate(blocks[r * len(xs):(r + 1) * len(xs)], axis=1)
                                      for r in range(len(ys))], axis=0)
                self._compare(s, (t, c, z), got)
        s.plane_digests = [plane_digest(s.digests[i], s.dtype, s.shape[3:], s.tile) for i in np.ndindex(*s.shape[:3])]
        m = len(sampled)
        log.info("%s: pixel-exact proof of scene %d (%s): %d/%d plane(s) of level 0 read back identical (%s of %d)",
                 self.who, s.index, s.name, m, m, "all" if m == n else "sample", n)
        return {"index": s.index, "name": s.name, "planes": n, "checked": m, "identical": m,
                "source_digest": blake3(b"".join(s.plane_digests)).hexdigest()}

    @staticmethod
    def _compare(s: _Scene, plane: tuple[int, int, int], got: np.ndarray, want: np.ndarray | None = None) -> None:
        t, c, z = plane
        want = s.digests[t, c, z] if want is None else want
        differs = (got != want).any(axis=-1)
        if differs.any():
            where = ", ".join(f"({iy}, {ix})" for iy, ix in np.argwhere(differs)[:6])
            raise PixelMismatch(
                f"pixel-exact proof failed: scene {s.index} ({s.name}) t={t} c={c} z={z}: level 0 as written differs "
                f"from the source in {int(differs.sum())} of {differs.size} tile(s) of {s.tile} x {s.tile} "
                f"(tile row, column: {where})")


def record_pixel_proof(ledger: Any, uid: str, result: Any) -> str | None:
    """Store the conversion's verdict as the ledger record ``pixel_proof``; returns ``verified: N/N planes identical``
    for the convert stage's details (None when the conversion carried no proof)."""
    verdict = result.extra.get("pixel_proof") if getattr(result, "extra", None) else None
    if not verdict:
        log.warning("%s: the conversion result carries no pixel-exact proof", uid)
        return None
    ledger.put_record(uid, "pixel_proof", verdict)
    return verdict.get("verdict") or f"verified: {verdict['verified']}"
