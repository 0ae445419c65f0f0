"""O_DIRECT plumbing for the collect copy engine (:mod:`microfair.transfer`), Linux first, degrading cleanly.

* :func:`open_direct` opens a second descriptor on a file with ``O_DIRECT``, or returns None where the
  file system refuses it (``EINVAL`` on tmpfs, some FUSE/NFS mounts);
* :func:`write_direct` writes the aligned part of a buffer with it and the unaligned rest through the
  ordinary descriptor; :class:`SourceReader` fills buffers from the source, directly where allowed;
* :func:`range_sync` is ``sync_file_range`` (the buffered path's writeback), a no-op where missing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO

log = logging.getLogger("microfair.transfer")

ALIGN = 4096  # O_DIRECT offsets and lengths: a multiple of every logical block size in use
WRITE = 2  # SYNC_FILE_RANGE_WRITE
WAIT_ALL = 1 | 2 | 4  # WAIT_BEFORE | WRITE | WAIT_AFTER
REFUSED = (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP)  # "not with O_DIRECT on this file system"
_said: set[str] = set()


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


def range_sync(fd: int, offset: int, length: int, flags: int) -> None:
    if _sync_file_range is not None and _sync_file_range(fd, offset, length, flags) != 0:
        err = ctypes.get_errno()
        if err not in (0, 22, 29, 38, 95):  # EINVAL/ESPIPE/ENOSYS/EOPNOTSUPP: not for this file system
            raise OSError(err, os.strerror(err))


def say(path: str, why: str = "") -> None:
    if path not in _said:
        _said.add(path)
        log.info("collect copy engine: %s path%s", path, f" ({why})" if why else "")


def open_direct(fd: int, flags: int, what: str = "buffered") -> int | None:
    """A second descriptor, ``flags | O_DIRECT``, on the file ``fd`` is open on; None where the file system
    refuses ``O_DIRECT`` (logged once, as the ``what`` path)."""
    if not hasattr(os, "O_DIRECT"):
        return None
    try:
        path = os.readlink(f"/proc/self/fd/{fd}")  # the file's name, so the new descriptor is named like it
        direct = os.open(path, flags | os.O_DIRECT)
    except OSError as exc:
        if exc.errno in REFUSED or exc.errno == errno.ENOENT:
            say(what, f"O_DIRECT refused: {exc.strerror}")
            return None
        raise
    a, b = os.fstat(direct), os.fstat(fd)
    if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino):  # renamed meanwhile: never touch another file
        os.close(direct)
        return None
    return direct


def clear_direct(fd: int) -> None:
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_DIRECT)


def write_all(fd: int, view: memoryview, offset: int) -> None:
    pos = 0
    while pos < len(view):  # pwrite may write less than asked (signals, some file systems)
        pos += os.pwrite(fd, view[pos:], offset + pos)


def write_direct(dfd: int, fd: int, view: memoryview, offset: int) -> None:
    """The aligned part of ``view`` through ``dfd`` (O_DIRECT, ``offset`` aligned), the rest through ``fd``."""
    cut, pos = len(view) - len(view) % ALIGN, 0
    while pos < cut and not pos % ALIGN:
        pos += os.pwrite(dfd, view[pos:cut], offset + pos)
    write_all(fd, view[pos:], offset + pos)


READS_IN_FLIGHT = 2  # O_DIRECT reads have no readahead: two at once keep the disk busy


def pread_into(fd: int, view: memoryview, offset: int, pool: ThreadPoolExecutor | None = None) -> int:
    """``preadv`` of ``view`` at ``offset``; with ``pool``, as :data:`READS_IN_FLIGHT` aligned parts read at
    once. Returns the bytes read contiguously from ``offset`` (short only at the end of the file)."""
    step = -(-len(view) // READS_IN_FLIGHT // ALIGN) * ALIGN
    if pool is None or len(view) <= step:
        return os.preadv(fd, [view], offset)
    starts = range(0, len(view), step)
    futures = [pool.submit(os.preadv, fd, [view[o:o + step]], offset + o) for o in starts]
    errors = [f.exception() for f in futures]  # every part finished before the buffer is handed on
    if any(errors):
        raise next(e for e in errors if e)
    n = 0
    for o, f in zip(starts, futures):
        if n == o:
            n += f.result()
    return n


class SourceReader:
    """The source, read into the ring's buffers: with ``O_DIRECT`` where allowed (large reads straight from
    the disk, no copy through the page cache), else ``readinto``. Always fills a buffer completely unless
    the file ends, so every write but the last stays aligned."""

    def __init__(self, src: BinaryIO, direct: bool) -> None:
        self.src, self.pos = src, src.tell()
        self.fd = (open_direct(src.fileno(), os.O_RDONLY, "buffered source read")
                   if direct and not self.pos % ALIGN else None)
        self.pool = (ThreadPoolExecutor(READS_IN_FLIGHT, thread_name_prefix="collect-read")
                     if self.fd is not None else None)

    def fill(self, view: memoryview) -> int:
        n = 0
        while n < len(view):
            if self.fd is not None and not n % ALIGN:
                try:
                    got = pread_into(self.fd, view[n:], self.pos + n, self.pool)
                except OSError as exc:
                    if exc.errno not in REFUSED:
                        raise
                    say("buffered source read", f"O_DIRECT read refused: {exc.strerror}")
                    self.close()
                    continue
            else:
                if self.src.tell() != self.pos + n:  # after direct reads: the rest of it buffered
                    self.src.seek(self.pos + n)
                got = self.src.readinto(view[n:])
            if not got:
                break
            n += got
        self.pos += n
        if self.fd is not None:
            self.src.seek(self.pos)
        return n

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
            self.pool = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
