"""Write a small Hamamatsu NDPI file by hand, for tests (tifffile reads NDPI but cannot write one).

NDPI is a classic little-endian TIFF whose header and IFD "next" offsets are 8 bytes, and whose IFDs
are followed by the high 32 bits of each tag's value offset (tifffile's ``TIFF.NDPI_LE``). We write
uncompressed RGB strips, one IFD per pyramid level (``Magnification`` tag 65421 > 0) and optionally a
macro picture (magnification -1), with the NDPI marker tag 65420 and ``Make`` = Hamamatsu.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

_SHORT, _LONG, _RATIONAL, _ASCII, _FLOAT = 3, 4, 5, 2, 11
_SIZES = {_SHORT: 2, _LONG: 4, _RATIONAL: 8, _ASCII: 1, _FLOAT: 4}


def write_ndpi(path: Path, levels: list[np.ndarray], *, magnification: float = 20.0, um_per_pixel: float = 0.45,
               macro: np.ndarray | None = None) -> None:
    """``levels``: (Y, X, 3) uint8 images, full resolution first."""
    images = [(a, magnification / (levels[0].shape[1] / a.shape[1]), um_per_pixel * levels[0].shape[1] / a.shape[1])
              for a in levels]
    if macro is not None:
        images.append((macro, -1.0, um_per_pixel * 20))
    out = bytearray(b"II*\x00" + b"\x00" * 8)
    strips = []
    for a, _, _ in images:
        strips.append(len(out))
        out += np.ascontiguousarray(a, dtype=np.uint8).tobytes()
    link = 4  # where the offset of the next IFD goes
    for (a, mag, um), strip in zip(images, strips):
        height, width = a.shape[:2]
        px_per_cm = 1e4 / um
        tags = [
            (256, _LONG, [width]), (257, _LONG, [height]), (258, _SHORT, [8, 8, 8]), (259, _SHORT, [1]),
            (262, _SHORT, [2]), (271, _ASCII, b"Hamamatsu\x00"), (272, _ASCII, b"C13220\x00"), (273, _LONG, [strip]),
            (277, _SHORT, [3]), (278, _LONG, [height]), (279, _LONG, [a.nbytes]),
            (282, _RATIONAL, [round(px_per_cm * 1000), 1000]), (283, _RATIONAL, [round(px_per_cm * 1000), 1000]),
            (284, _SHORT, [1]), (296, _SHORT, [3]), (305, _ASCII, b"NDP.scan 3.4\x00"), (65420, _LONG, [1]),
            (65421, _FLOAT, [mag]),
        ]
        payloads = []
        for code, kind, values in tags:
            data = values if isinstance(values, bytes) else struct.pack(
                "<" + {_SHORT: "H", _LONG: "I", _RATIONAL: "I", _FLOAT: "f"}[kind] * len(values), *values)
            count = len(data) // _SIZES[kind]
            payloads.append((code, kind, count, data))
        inline: list[bytes] = []
        for _, _, _, data in payloads:  # values longer than 4 bytes go before the IFD
            if len(data) > 4:
                inline.append(struct.pack("<I", len(out)))
                out += data + (b"\x00" if len(data) % 2 else b"")
            else:
                inline.append(data.ljust(4, b"\x00"))
        ifd = len(out)
        out[link:link + 8] = struct.pack("<Q", ifd)
        out += struct.pack("<H", len(payloads))
        for (code, kind, count, _), value in zip(payloads, inline):
            out += struct.pack("<HHI", code, kind, count) + value
        link = len(out)
        out += b"\x00" * 8  # next IFD offset (filled in by the next image)
        out += b"\x00" * (4 * len(payloads))  # high 32 bits of every value offset
    path.write_bytes(bytes(out))
