"""Every shard file of a sharded (Zarr v3) OME-Zarr is whole: checked before publication, from the shard indexes.

A shard file ends with its index (``index_location: end``): one (offset, length) pair of little-endian uint64 per
inner chunk, then the CRC32C of those pairs. A shard cut short (a write torn by a crash, a full disk that did not
raise, a storage fault) loses its index, so its CRC32C no longer matches, or its chunks point past the end of the
file. Reading only the last bytes of each file finds it, at every pyramid level (the pixel-exact proof reads level 0
in full; this covers the levels above it for a few bytes per shard).
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import google_crc32c
import numpy as np

log = logging.getLogger(__name__)

EMPTY = np.uint64(2**64 - 1)  # (offset, length) of an inner chunk that was never written (all fill value)


class TornShard(ValueError):
    """A shard file is not whole; the message names the file."""


def _sharding(meta: dict) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """(shard shape, inner chunk shape) of a v3 array's metadata, or None when it is not sharded (or not indexed
    at the end with a CRC32C, which is what microfair writes)."""
    codecs = meta.get("codecs") or []
    if meta.get("node_type") != "array" or len(codecs) != 1 or codecs[0].get("name") != "sharding_indexed":
        return None
    conf = codecs[0]["configuration"]
    index_codecs = [c.get("name") for c in conf.get("index_codecs", [])]
    if conf.get("index_location", "end") != "end" or index_codecs != ["bytes", "crc32c"]:
        return None
    shard = tuple(meta["chunk_grid"]["configuration"]["chunk_shape"])
    return shard, tuple(conf["chunk_shape"])


def check_shard(path: Path, n_chunks: int) -> None:
    """Raise :class:`TornShard` unless ``path`` ends with a valid index of ``n_chunks`` chunks, all inside it."""
    index_bytes = 16 * n_chunks
    size = path.stat().st_size
    if size < index_bytes + 4:
        raise TornShard(f"shard {path} is {size} bytes, shorter than its own index ({index_bytes + 4} bytes)")
    with open(path, "rb") as f:
        f.seek(size - index_bytes - 4)
        tail = f.read()
    index, crc = tail[:index_bytes], tail[index_bytes:]
    if int.from_bytes(crc, "little") != google_crc32c.value(index):
        raise TornShard(f"shard {path} is torn: the CRC32C of its index does not match (cut short or overwritten)")
    pairs = np.frombuffer(index, dtype="<u8").reshape(n_chunks, 2)
    used = pairs[~((pairs[:, 0] == EMPTY) & (pairs[:, 1] == EMPTY))]
    if used.size and int((used[:, 0] + used[:, 1]).max()) > size - index_bytes - 4:
        raise TornShard(f"shard {path} is torn: a chunk lies beyond the end of its data")


def check_shards(root: Path) -> int:
    """Check every shard file of every sharded array below ``root``; returns the number checked."""
    checked = 0
    for dirpath, _, files in os.walk(root):
        if "zarr.json" not in files:
            continue
        try:
            meta = json.loads((Path(dirpath) / "zarr.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise TornShard(f"{dirpath}/zarr.json cannot be read: {err}") from err
        geometry = _sharding(meta)
        if geometry is None:
            continue
        shard, inner = geometry
        n_chunks = math.prod(s // c for s, c in zip(shard, inner))
        for shard_file in (Path(dirpath) / "c").rglob("*"):
            if shard_file.is_file():
                check_shard(shard_file, n_chunks)
                checked += 1
    return checked
