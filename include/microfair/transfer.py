"""The copy loop of collect: read, write and both hashes overlapped, the disk written back as it goes.

``copy_into(src, out_fd, digest)`` copies the rest of ``src`` (a raw file object, at its current offset)
to ``out_fd`` (at its current offset):

* the source is read with ``readinto`` into a ring of page-aligned buffers (anonymous ``mmap``) of
  :data:`~microfair.checksum.CHUNK` bytes — large, aligned reads, no per-chunk allocation;
* each buffer is written (``os.pwrite``, one writer thread) and fed to SHA-256 and BLAKE3 (one thread
  each, :meth:`StreamingDigest.update_async`); the reader fills the next buffer meanwhile. A buffer is
  reused only when its three consumers are done, so memory is ``DEPTH × CHUNK``;
* writeback starts while copying: after each chunk, ``sync_file_range(WRITE)`` starts it for that chunk,
  and a chunk ``DEPTH`` behind is waited for and dropped from the page cache (``posix_fadvise
  DONTNEED``). The final ``fsync`` then has little left to do, the copy never fills the page cache with
  dirty pages, and the verification read that follows reads the disk, not the cache.

Linux-only calls degrade gracefully: without ``sync_file_range`` the final ``fsync`` does all the work.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import mmap
import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

from microfair.checksum import CHUNK, StreamingDigest

log = logging.getLogger(__name__)

DEPTH = 4  # buffers in flight: 4 x 8 MiB
_WRITE = 2  # SYNC_FILE_RANGE_WRITE
_WAIT_ALL = 1 | 2 | 4  # WAIT_BEFORE | WRITE | WAIT_AFTER


def _libc_sync_file_range():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint)
    fn.restype = ctypes.c_int
    return fn


_sync_file_range = _libc_sync_file_range()


def _range_sync(fd: int, offset: int, length: int, flags: int) -> None:
    if _sync_file_range is not None and _sync_file_range(fd, offset, length, flags) != 0:
        err = ctypes.get_errno()
        if err not in (0, 22, 29, 38, 95):  # EINVAL/ESPIPE/ENOSYS/EOPNOTSUPP: not for this file system
            raise OSError(err, os.strerror(err))


def _write_chunk(fd: int, view: memoryview, offset: int, old: tuple[int, int] | None) -> None:
    pos = 0
    while pos < len(view):  # pwrite may write less than asked (signals, some file systems)
        pos += os.pwrite(fd, view[pos:], offset + pos)
    _range_sync(fd, offset, len(view), _WRITE)
    if old is not None:
        # A range written DEPTH chunks ago: wait for it to reach the disk, then drop it from the cache.
        lo, hi = old
        _range_sync(fd, lo, hi - lo, _WAIT_ALL)
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, lo, hi - lo, os.POSIX_FADV_DONTNEED)


def copy_into(src: BinaryIO, out_fd: int, digest: StreamingDigest, *, chunk: int = CHUNK,
              depth: int = DEPTH) -> int:
    """Copy the rest of ``src`` to ``out_fd`` from their current offsets; returns the bytes copied.

    Ends with ``fsync(out_fd)``. Raises the first ``OSError`` of the reader or the writer (e.g. ENOSPC);
    the digest then holds a prefix and must be abandoned (:meth:`StreamingDigest.close`).
    """
    if hasattr(os, "posix_fadvise"):
        try:
            os.posix_fadvise(src.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        except OSError:
            pass
    offset = start = os.lseek(out_fd, 0, os.SEEK_CUR)
    bufs = [mmap.mmap(-1, chunk) for _ in range(depth)]
    views = [memoryview(b) for b in bufs]
    pending: list[list[Future]] = [[] for _ in range(depth)]
    ends: list[int] = [start] * depth
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="collect-write")
    i, dropped = 0, 0
    try:
        while True:
            for f in pending[i]:
                f.result()  # the buffer is free again; a write error surfaces here
            pending[i] = []
            n = src.readinto(views[i])
            if not n:
                break
            oldest = ends[(i + 1) % depth]
            old = (dropped, oldest) if oldest > dropped and offset - start >= depth * chunk else None
            dropped = oldest if old else dropped
            pending[i] = digest.update_async(views[i][:n])
            pending[i].append(writer.submit(_write_chunk, out_fd, views[i][:n], offset, old))
            offset += n
            ends[i] = offset
            i = (i + 1) % depth
        for group in pending:
            for f in group:
                f.result()
        os.fsync(out_fd)
        os.lseek(out_fd, offset, os.SEEK_SET)
        return offset - start
    finally:
        writer.shutdown(wait=True, cancel_futures=True)
        for group in pending:  # after an error: let the hash threads finish with the buffers
            for f in group:
                f.cancel() or f.exception()
        pending.clear()
        for v in views:
            v.release()
        for b in bufs:
            try:
                b.close()
            except BufferError:  # a slice still referenced by a failed future: the GC frees the map
                pass
