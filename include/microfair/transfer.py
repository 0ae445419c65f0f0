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
  DONTNEED``). The final ``fsync`` then has little left to do, and the copy never fills the page cache
  with dirty pages;
* the verification read runs *during* the copy: each range, once on the disk and dropped from the cache,
  is read back (:func:`read_back`, its own thread) and hashed with BLAKE3 in order; after the ``fsync``
  the last ranges are dropped and read back too. The caller compares that digest with the one taken while
  copying, so a copy is verified against what the disk returns, at about the cost of the slower of the
  write and the read instead of their sum.

Linux-only calls degrade gracefully: without ``sync_file_range`` the final ``fsync`` does all the work.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import mmap
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

from blake3 import blake3

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


@dataclass(frozen=True)
class Copied:
    bytes: int  # copied by this call (after a resumed prefix)
    read_back_blake3: str  # BLAKE3 of the whole file as read back from the disk (prefix included)


def read_back(fd: int, lo: int, hi: int, hasher: blake3, chunk: int = CHUNK) -> None:
    """Drop ``[lo, hi)`` of ``fd`` from the page cache, then read it from the disk into ``hasher``."""
    if hi <= lo:
        return
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, lo, hi - lo, os.POSIX_FADV_DONTNEED)
    pos = lo
    while pos < hi:
        data = os.pread(fd, min(chunk, hi - pos), pos)
        if not data:
            raise OSError(f"read back: the file ends at byte {pos}, expected {hi}")
        hasher.update(data)
        pos += len(data)


class _ReadBack:
    """The verification read, one range after another, in its own thread."""

    def __init__(self, fd: int) -> None:
        self.fd, self.hasher, self.upto = fd, blake3(), 0
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="collect-readback")
        self.futures: list[Future] = []

    def add(self, lo: int, hi: int) -> None:
        assert lo == self.upto, f"read back out of order: {lo} after {self.upto}"
        self.upto = hi
        self.futures.append(self.pool.submit(read_back, self.fd, lo, hi, self.hasher))
        self.futures = [f for f in self.futures if not f.done() or f.exception()]

    def finish(self, end: int) -> str:
        self.add(self.upto, end)
        for f in self.futures:
            f.result()
        self.pool.shutdown(wait=True)
        return self.hasher.hexdigest()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _write_chunk(fd: int, view: memoryview, offset: int, old: tuple[int, int] | None,
                 verify: _ReadBack | None = None) -> None:
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
        if verify is not None:
            verify.add(lo, hi)


def copy_into(src: BinaryIO, out_fd: int, digest: StreamingDigest, *, chunk: int = CHUNK,
              depth: int = DEPTH) -> Copied:
    """Copy the rest of ``src`` to ``out_fd`` (opened read-write) from their current offsets, and read the
    whole file back from the disk as it goes.

    Ends with ``fsync(out_fd)``. Raises the first ``OSError`` of the reader, the writer or the read-back
    (e.g. ENOSPC); the digest then holds a prefix and must be abandoned (:meth:`StreamingDigest.close`).
    """
    if hasattr(os, "posix_fadvise"):
        try:
            os.posix_fadvise(src.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        except OSError:
            pass
    offset = start = os.lseek(out_fd, 0, os.SEEK_CUR)
    verify = _ReadBack(out_fd)
    if start:
        os.fsync(out_fd)  # a resumed prefix: on the disk before it is read back
        verify.add(0, start)
    bufs = [mmap.mmap(-1, chunk) for _ in range(depth)]
    views = [memoryview(b) for b in bufs]
    pending: list[list[Future]] = [[] for _ in range(depth)]
    ends: list[int] = [start] * depth
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="collect-write")
    i, dropped = 0, start
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
            pending[i].append(writer.submit(_write_chunk, out_fd, views[i][:n], offset, old, verify))
            offset += n
            ends[i] = offset
            i = (i + 1) % depth
        for group in pending:
            for f in group:
                f.result()
        os.fsync(out_fd)
        os.lseek(out_fd, offset, os.SEEK_SET)
        return Copied(offset - start, verify.finish(offset))
    finally:
        writer.shutdown(wait=True, cancel_futures=True)
        verify.close()
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
