"""Exclusive publication: a finished, verified temporary appears at its final name, or nothing changes.

Nothing here ever replaces what is at the final name: if anything arrived there in
the meantime (another worker's copy, an empty folder), :class:`FileExistsError` is
raised and the temporary is left for the caller to clean up or to quarantine.

* Linux ``renameat2(RENAME_NOREPLACE)`` (through ``ctypes``; glibc >= 2.28, kernel
  >= 3.15, and supported by ext4, xfs, btrfs, tmpfs and overlayfs) does it for files
  and folders in one atomic step;
* files, where the file system lacks it: ``link(tmp, final)`` (fails with EEXIST
  when something is there), then ``unlink(tmp)``;
* folders, where the file system lacks it: the target must not exist and is
  checked right before ``rename``; the remaining race window is logged once.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_UNSUPPORTED = (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP)

try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _renameat2 = _libc.renameat2
    _renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    _renameat2.restype = ctypes.c_int
except (OSError, AttributeError):  # not Linux/glibc
    _renameat2 = None
_warned = False


def rename_noreplace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> bool:
    """Atomically rename ``src`` to ``dst`` unless ``dst`` exists; False when the system lacks the call.

    Raises :class:`FileExistsError` when ``dst`` exists, other :class:`OSError` as they come.
    """
    if _renameat2 is None:
        return False
    rc = _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in _UNSUPPORTED:
        return False
    if err == errno.EEXIST:
        raise FileExistsError(errno.EEXIST, "already exists (not replaced)", str(dst))
    raise OSError(err, os.strerror(err), str(src), None, str(dst))


def publish_file(tmp: str | os.PathLike[str], final: str | os.PathLike[str]) -> None:
    """Move the finished file ``tmp`` to ``final``, never over an existing file; fsyncs the folder."""
    tmp, final = Path(tmp), Path(final)
    if not rename_noreplace(tmp, final):
        os.link(tmp, final)  # FileExistsError if anything is there
        os.unlink(tmp)
    _fsync_dir(final.parent)


def publish_dir(tmp: str | os.PathLike[str], final: str | os.PathLike[str]) -> None:
    """Move the finished folder ``tmp`` to ``final``, never over anything (not even an empty folder)."""
    global _warned
    tmp, final = Path(tmp), Path(final)
    if not rename_noreplace(tmp, final):
        if not _warned:
            log.warning("renameat2(RENAME_NOREPLACE) is not available on %s; publishing folders with a "
                        "check-then-rename", final.parent)
            _warned = True
        if os.path.lexists(final):
            raise FileExistsError(errno.EEXIST, "already exists (not replaced)", str(final))
        os.rename(tmp, final)
    _fsync_dir(final.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
