"""An independent reader of cellSens ``.ets`` pixel files, for tests only (never the reader under test).

The layout follows the public description in Bio-Formats' ``CellSensReader``: a ``SIS`` header
(header size, version, number of tile dimensions, offset of the ``ETS`` header, offset and count of
the tile table), the ``ETS`` header (pixel type, channels per tile, colour space, compression,
quality, tile width and height), then one table row per stored tile: an int32, ``ndim`` uint32
coordinates (x tile, y tile, then the stack's own axes, the resolution level last), the tile's
int64 offset, its int32 byte count and an int32. JPEG 2000 tiles are decoded with imagecodecs.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import imagecodecs
import numpy as np

_CODECS = {3: imagecodecs.jpeg2k_decode, 2: imagecodecs.jpeg8_decode, 0: None}


@dataclass(frozen=True)
class EtsTile:
    coords: tuple[int, ...]  # x tile, y tile, stack axes..., level
    offset: int
    nbytes: int


def read_tiles(path: Path) -> tuple[dict, list[EtsTile]]:
    data = path.read_bytes()
    magic, _, _, ndim, ets_at, _, _, table_at, n_tiles, _ = struct.unpack("<4siiiqiiqii", data[:48])
    assert magic == b"SIS\0", magic
    fields = struct.unpack("<4s9i", data[ets_at:ets_at + 40])
    assert fields[0] == b"ETS\0", fields[0]
    header = dict(pixel_type=fields[2], samples=fields[3], colorspace=fields[4], compression=fields[5],
                  quality=fields[6], tile_x=fields[7], tile_y=fields[8])
    row = 4 + 4 * ndim + 16
    tiles = []
    for i in range(n_tiles):
        rec = struct.unpack(f"<i{ndim}Iqii", data[table_at + i * row:table_at + (i + 1) * row])
        tiles.append(EtsTile(tuple(rec[1:1 + ndim]), rec[1 + ndim], rec[2 + ndim]))
    return header, tiles


def decode_tile(path: Path, header: dict, tile: EtsTile) -> np.ndarray:
    with open(path, "rb") as fh:
        fh.seek(tile.offset)
        blob = fh.read(tile.nbytes)
    codec = _CODECS[header["compression"]]
    if codec is None:
        raise NotImplementedError("uncompressed ETS tiles are not needed by the samples")
    return np.asarray(codec(blob))
