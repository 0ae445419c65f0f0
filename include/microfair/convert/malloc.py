"""Bound glibc's malloc arenas for a conversion, so freed plane buffers are reused instead of piling up.

glibc gives each thread that allocates its own arena (up to 8 per core). The conversion's threads (the plane
engine's workers, zarr's event loop and executor, the zarrs encoder's pool) each allocate and free plane-sized
buffers (16 MB for a 2048 x 4096 uint16 plane) many times; spread over many arenas, the freed space of one arena is
not reused by the next thread, and the resident set grows by ~100 MB per thread. Measured on the 1 GB benchmark
input (2 threads, ``benchmarks/convert.py``): peak RSS 637 MB with glibc's defaults, 398 MB with one arena, with
the same CPU time. Forcing big buffers to ``mmap`` instead (``M_MMAP_THRESHOLD``) also bounds memory but costs
~50 % more CPU here, in page faults.

``limit_arenas()`` calls ``mallopt(M_ARENA_MAX, n)`` once per process, before the conversion's threads start
(threads that already have an arena keep it). ``MICROFAIR_MALLOC_ARENAS`` sets ``n`` (default 1; 0 leaves glibc's
default). Not glibc (musl, macOS): nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

M_ARENA_MAX = -8
ENV = "MICROFAIR_MALLOC_ARENAS"
_done: list[int] = []


def limit_arenas(default: int = 1) -> int | None:
    """Cap glibc's arenas (see the module docstring); returns the cap set, or None when nothing was done."""
    if _done:
        return _done[0] or None
    try:
        n = int(os.environ.get(ENV, default))
    except ValueError:
        n = default
    _done.append(max(0, n))
    if n <= 0:
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    if mallopt(M_ARENA_MAX, n) != 1:
        log.debug("mallopt(M_ARENA_MAX, %d) refused", n)
        return None
    log.debug("glibc malloc arenas capped at %d for the conversion", n)
    return n
