"""The copy loop of collect: read, write and both hashes overlapped, the temporary read back from the disk.

``copy_into(src, out_fd, digest)`` copies the rest of ``src`` (a raw file object, at its current offset)
to ``out_fd`` (at its current offset):

* the source is read into a ring of page-aligned buffers (anonymous ``mmap``) of :data:`COPY_CHUNK`
  bytes — large, aligned reads, no per-chunk allocation — with ``O_DIRECT`` where allowed
  (:data:`DIRECT_SOURCE`; two reads in flight, as there is no readahead), else through the page cache;
* each buffer is written by a writer thread (``os.pwrite``) and fed to SHA-256 and BLAKE3 (one thread
  each, :meth:`StreamingDigest.update_async`); the reader fills the next buffer meanwhile. A buffer is
  reused only when its consumers are done, so memory is ``DEPTH × COPY_CHUNK`` plus one read-back buffer;
* **direct path** (the default where the file system allows it): the temporary is written with
  ``O_DIRECT`` through a second descriptor, straight from the aligned buffers to the disk, bypassing the
  page cache (the page cache and its writeback, not the disk, limited a buffered copy here). Offsets
  stay multiples of :data:`~microfair.direct_io.ALIGN`; the unaligned tail of the last chunk (and the
  unaligned head of a resumed copy) go through the ordinary descriptor. Each range, once its write has
  returned, is read back with ``O_DIRECT`` too (after ``posix_fadvise(DONTNEED)``): a read that cannot
  be served from the page cache;
* **buffered path** (the fallback when ``O_DIRECT`` is refused, e.g. tmpfs, some FUSE/NFS: ``EINVAL`` at
  open or at the first write): writeback is started per chunk with ``sync_file_range(WRITE)``; a chunk
  ``DEPTH`` behind is waited for, dropped from the page cache (``DONTNEED``) and read back;
* the verification read runs *during* the copy, in order, in its own thread (:func:`read_back`), and is
  hashed with BLAKE3; after the final ``fsync`` the last ranges are read back too. The caller compares
  that digest with the one taken while copying *before* it renames the temporary, so a copy is verified
  against what the disk returns.

Which path was taken is logged once per process and returned in :attr:`Copied.direct`.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

from blake3 import blake3

from microfair.checksum import CHUNK, StreamingDigest
from microfair.direct_io import (ALIGN, REFUSED, WAIT_ALL, WRITE, SourceReader, clear_direct, open_direct,
                                 READS_IN_FLIGHT, pread_into, range_sync, say, write_all, write_direct)

log = logging.getLogger(__name__)

COPY_CHUNK = 32 << 20  # the unit of I/O: large requests keep a mixed read/write load near the disk's limit
DEPTH = 3  # buffers in flight: 3 x 32 MiB, plus one for the read-back
WRITERS = 1  # writer threads on the direct path (extending O_DIRECT writes are serialised by the file system)
DIRECT = True  # False forces the buffered path (tests, or a file system that misbehaves with O_DIRECT)
DIRECT_SOURCE = True  # read the source with O_DIRECT too (no page cache: far less CPU, no cache churn)


@dataclass(frozen=True)
class Copied:
    bytes: int  # copied by this call (after a resumed prefix)
    read_back_blake3: str  # BLAKE3 of the whole file as read back from the disk (prefix included)
    direct: bool = False  # written with O_DIRECT (False: the buffered fallback, or less than one block)


def read_back(fd: int, lo: int, hi: int, hasher: blake3, chunk: int = CHUNK, *,
              buf: mmap.mmap | None = None, direct: bool = False, pool: ThreadPoolExecutor | None = None) -> None:
    """Drop ``[lo, hi)`` of ``fd`` from the page cache, then read it from the disk into ``hasher``.

    With ``direct`` (``fd`` opened ``O_DIRECT``, ``buf`` page-aligned) the reads start at multiples of
    :data:`ALIGN` (more than one at once with ``pool``) and the bytes outside ``[lo, hi)`` are not hashed;
    an ``EINVAL`` clears ``O_DIRECT`` on ``fd`` and the range is read through the (dropped) page cache.
    """
    if hi <= lo:
        return
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, lo, hi - lo, os.POSIX_FADV_DONTNEED)
    view = memoryview(buf) if buf is not None else None
    done = lo
    try:
        while done < hi:
            if view is None:
                data = os.pread(fd, min(chunk, hi - done), done)
                pos, got = done, len(data)
            else:
                pos = done - done % ALIGN if direct else done
                want = min(len(view), -(-(hi - pos) // ALIGN) * ALIGN if direct else hi - pos)
                try:
                    got = pread_into(fd, view[:want], pos, pool if direct else None)
                except OSError as exc:
                    if not direct or exc.errno not in REFUSED:
                        raise
                    clear_direct(fd)
                    say("buffered read-back", f"O_DIRECT read refused: {exc.strerror}")
                    direct = False
                    continue
                data = view
            end = min(pos + got, hi)
            if end <= done:
                raise OSError(errno.EIO, f"read back: the file ends at byte {pos + got}, expected {hi}")
            hasher.update(data[done - pos:end - pos])
            done = end
    finally:
        if view is not None:
            view.release()


class _ReadBack:
    """The verification read, one range after another, in its own thread."""

    def __init__(self, fd: int, direct: bool, chunk: int) -> None:
        self.fd, self.direct, self.hasher, self.upto = fd, direct, blake3(), 0
        self.buf = mmap.mmap(-1, chunk)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="collect-readback")
        self.reads = ThreadPoolExecutor(READS_IN_FLIGHT, thread_name_prefix="collect-readback-io") if direct else None
        self.futures: list[Future] = []

    def add(self, lo: int, hi: int) -> None:
        assert lo == self.upto, f"read back out of order: {lo} after {self.upto}"
        self.upto = hi
        self.futures.append(self.pool.submit(read_back, self.fd, lo, hi, self.hasher, buf=self.buf,
                                             direct=self.direct, pool=self.reads))
        self.futures = [f for f in self.futures if not f.done() or f.exception()]

    def finish(self, end: int) -> str:
        self.add(self.upto, end)
        for f in self.futures:
            f.result()
        self.pool.shutdown(wait=True)
        return self.hasher.hexdigest()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        if self.reads is not None:
            self.reads.shutdown(wait=True)
        try:
            self.buf.close()
        except BufferError:  # a slice still referenced by a failed future: the GC frees the map
            pass


def _write_chunk(fd: int, view: memoryview, offset: int, old: tuple[int, int] | None,
                 verify: _ReadBack | None = None) -> None:
    """The buffered path: write, start writeback, and drop and read back a range written DEPTH chunks ago."""
    write_all(fd, view, offset)
    range_sync(fd, offset, len(view), WRITE)
    if old is not None:
        lo, hi = old
        range_sync(fd, lo, hi - lo, WAIT_ALL)
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, lo, hi - lo, os.POSIX_FADV_DONTNEED)
        if verify is not None:
            verify.add(lo, hi)


def _advance(inflight: deque[tuple[int, Future]], verify: _ReadBack, upto: int, aligned: bool = False) -> None:
    """Hand the chunks whose O_DIRECT write has returned to the read-back, in file order; wait for the
    writes of those that end at or before ``upto``. With ``aligned``, a last range ending off
    :data:`ALIGN` (its tail went through the page cache) is left for after the fsync."""
    while inflight:
        end, job = inflight[0]
        if end > upto and not job.done():
            return
        job.result()  # a write error surfaces here
        inflight.popleft()
        if aligned and end % ALIGN:
            return
        verify.add(verify.upto, end)


def copy_into(src: BinaryIO, out_fd: int, digest: StreamingDigest, *, chunk: int = COPY_CHUNK,
              depth: int = DEPTH, writers: int = WRITERS) -> Copied:
    """Copy the rest of ``src`` to ``out_fd`` (opened read-write) from their current offsets, and read the
    whole file back from the disk as it goes.

    Ends with ``fsync(out_fd)``. Raises the first ``OSError`` of the reader, the writers or the read-back
    (e.g. ENOSPC); the digest then holds a prefix and must be abandoned (:meth:`StreamingDigest.close`).
    """
    if chunk % ALIGN:
        raise ValueError(f"chunk must be a multiple of {ALIGN}")
    if hasattr(os, "posix_fadvise"):
        try:
            os.posix_fadvise(src.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        except OSError:
            pass
    offset = start = os.lseek(out_fd, 0, os.SEEK_CUR)
    dfd = open_direct(out_fd, os.O_WRONLY) if DIRECT else None
    rfd = open_direct(out_fd, os.O_RDONLY) if dfd is not None else None
    verify = _ReadBack(rfd if rfd is not None else out_fd, rfd is not None, chunk)
    bufs = [mmap.mmap(-1, chunk) for _ in range(depth)]
    views = [memoryview(b) for b in bufs]
    pending: list[list[Future]] = [[] for _ in range(depth)]
    writer = ThreadPoolExecutor(max_workers=max(1, writers if dfd is not None else 1),
                                thread_name_prefix="collect-write")
    probed, source = False, None
    try:
        if start:
            os.fsync(out_fd)  # a resumed prefix: on the disk before it is read back
            verify.add(0, start)
        if dfd is not None and start % ALIGN:  # the head up to the next aligned offset, buffered
            n = SourceReader(src, False).fill(views[0][:ALIGN - start % ALIGN])
            for f in digest.update_async(views[0][:n]):
                f.result()
            write_all(out_fd, views[0][:n], offset)
            offset += n
        source = SourceReader(src, dfd is not None and DIRECT_SOURCE)
        ends = [offset] * depth
        inflight: deque[tuple[int, Future]] = deque()  # direct path: (end, write) in file order
        i, dropped = 0, start
        while True:
            if dfd is not None:  # read back every chunk written so far, in order
                _advance(inflight, verify, ends[i])
            for f in pending[i]:
                f.result()  # the buffer is free again; a write error surfaces here
            pending[i] = []
            n = source.fill(views[i])
            if not n:
                break
            view = views[i][:n]
            pending[i] = digest.update_async(view)
            if dfd is not None:
                job = writer.submit(write_direct, dfd, out_fd, view, offset)
                if not probed and n >= ALIGN:  # the first O_DIRECT write decides: it works, or EINVAL
                    probed = True
                    try:
                        job.result()
                        say("O_DIRECT", "writes and read-back bypass the page cache")
                    except OSError as exc:
                        if exc.errno not in REFUSED:
                            raise
                        say("buffered", f"O_DIRECT write refused: {exc.strerror}")
                        os.close(dfd)
                        dfd, dropped = None, verify.upto
                        job = writer.submit(_write_chunk, out_fd, view, offset, None, verify)
                if dfd is not None:
                    inflight.append((offset + n, job))
            else:
                oldest = ends[(i + 1) % depth]
                old = (dropped, oldest) if oldest > dropped and offset - start >= depth * chunk else None
                dropped = oldest if old else dropped
                job = writer.submit(_write_chunk, out_fd, view, offset, old, verify)
            pending[i].append(job)
            offset += n
            ends[i] = offset
            i = (i + 1) % depth
        if dfd is not None:  # the last writes; an unaligned tail is read back after the fsync
            _advance(inflight, verify, offset, aligned=True)
        for group in pending:
            for f in group:
                f.result()
        if dfd is None:
            say("buffered", "O_DIRECT switched off or not available")
        os.fsync(out_fd)
        os.lseek(out_fd, offset, os.SEEK_SET)
        return Copied(offset - start, verify.finish(offset), probed and dfd is not None)
    finally:
        writer.shutdown(wait=True, cancel_futures=True)
        verify.close()
        if source is not None:
            source.close()
        for fd in (dfd, rfd):
            if fd is not None:
                os.close(fd)
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
