"""The collect copy engine (microfair.transfer): the O_DIRECT path, its buffered fallback, read-back, resume."""

import errno
import fcntl
import hashlib
import logging
import os
from pathlib import Path

import pytest
from blake3 import blake3

import microfair.collect as col
import microfair.direct_io as dio
import microfair.transfer as transfer
from microfair.checksum import StreamingDigest
from microfair.transfer import COPY_CHUNK, copy_into

SMALL = 64 << 10  # a small ring chunk, so a few hundred KiB cross several chunks
SIZES = [0, 1, 4095, 4096, 4097, SMALL + 1, 3 * SMALL + 4097]


def _is_direct(fd: int) -> bool:
    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT)


def _skip_without_direct(where: Path) -> None:
    """Skip where the file system refuses O_DIRECT (e.g. a tmpfs /tmp): the direct path cannot run there."""
    try:
        os.close(os.open(where / ".probe", os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600))
    except OSError as exc:
        pytest.skip(f"O_DIRECT not supported under {where}: {exc.strerror}")


@pytest.fixture
def direct_ok(tmp_path):
    _skip_without_direct(tmp_path)
    return tmp_path


@pytest.fixture(params=["direct", "open refused", "io refused"])
def path_kind(request, direct_ok, monkeypatch):
    """The engine's three situations: O_DIRECT works; ``open(O_DIRECT)`` fails with EINVAL (tmpfs); the open
    works but every O_DIRECT read and write fails with EINVAL (some FUSE/NFS mounts)."""
    if request.param == "open refused":
        real_open = os.open

        def no_direct_open(path, flags, *a, **kw):
            if flags & os.O_DIRECT:
                raise OSError(errno.EINVAL, "Invalid argument")
            return real_open(path, flags, *a, **kw)

        monkeypatch.setattr(os, "open", no_direct_open)
    elif request.param == "io refused":
        real_pwrite, real_preadv = os.pwrite, os.preadv

        def pwrite(fd, data, offset):
            if _is_direct(fd):
                raise OSError(errno.EINVAL, "Invalid argument")
            return real_pwrite(fd, data, offset)

        def preadv(fd, buffers, offset):
            if _is_direct(fd):
                raise OSError(errno.EINVAL, "Invalid argument")
            return real_preadv(fd, buffers, offset)

        monkeypatch.setattr(os, "pwrite", pwrite)
        monkeypatch.setattr(os, "preadv", preadv)
    return request.param


def _copy(src: Path, tmp: Path, chunk: int = SMALL, at: int = 0, writers: int = 1):
    digest = StreamingDigest()
    with open(src, "rb", buffering=0) as f:
        f.seek(at)
        out = os.open(tmp, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.lseek(out, at, os.SEEK_SET)
            if at:
                with open(src, "rb") as again:
                    digest.update(again.read(at))
            copied = copy_into(f, out, digest, chunk=chunk, writers=writers)
        finally:
            os.close(out)
    return copied, digest.digest()


@pytest.mark.parametrize("size", SIZES)
def test_every_size_is_copied_byte_identical_and_verified(tmp_path, path_kind, size):
    data = os.urandom(size)
    src, tmp = tmp_path / "src.bin", tmp_path / "tmp.bin"
    src.write_bytes(data)
    copied, d = _copy(src, tmp)
    assert tmp.read_bytes() == data
    assert (d.size, d.sha256, d.blake3) == (size, hashlib.sha256(data).hexdigest(), blake3(data).hexdigest())
    assert copied.read_back_blake3 == d.blake3 and copied.bytes == size
    assert copied.direct is (path_kind == "direct" and size >= dio.ALIGN)  # less than a block: no O_DIRECT write


def test_two_writers_in_flight_still_read_back_in_order(direct_ok):
    data = os.urandom(9 * SMALL + 4097)
    src, tmp = direct_ok / "src.bin", direct_ok / "tmp.bin"
    src.write_bytes(data)
    copied, d = _copy(src, tmp, writers=2)
    assert tmp.read_bytes() == data and copied.direct and copied.read_back_blake3 == d.blake3


@pytest.mark.parametrize("size", [4097, 3 * SMALL + 4097])
def test_the_source_can_be_read_with_o_direct_too(direct_ok, monkeypatch, size):
    monkeypatch.setattr(transfer, "DIRECT_SOURCE", True)
    data = os.urandom(size)
    src, tmp = direct_ok / "src.bin", direct_ok / "tmp.bin"
    src.write_bytes(data)
    direct_reads, real_preadv = [], os.preadv

    def preadv(fd, buffers, offset):
        n = real_preadv(fd, buffers, offset)
        if _is_direct(fd) and Path(os.readlink(f"/proc/self/fd/{fd}")).name == "src.bin":
            direct_reads.append(n)
        return n

    monkeypatch.setattr(os, "preadv", preadv)
    copied, d = _copy(src, tmp)
    assert tmp.read_bytes() == data and copied.read_back_blake3 == d.blake3 == blake3(data).hexdigest()
    assert sum(direct_reads) == size  # the whole source, through O_DIRECT (the short read at the end included)


def test_a_file_just_over_the_default_chunk_through_copy_verified(tmp_path, path_kind):
    data = os.urandom(COPY_CHUNK + 1)
    src, dest = tmp_path / "src.bin", tmp_path / "raw" / "dest.bin"
    src.write_bytes(data)
    st = src.stat()
    d = col.copy_verified(src, dest, tag="t", expect_size=st.st_size, expect_mtime_ns=st.st_mtime_ns)
    assert dest.read_bytes() == data and d.blake3 == blake3(data).hexdigest()
    assert not list(dest.parent.glob(".*partial*"))


def test_the_direct_path_writes_and_reads_back_with_o_direct(direct_ok, monkeypatch):
    data = os.urandom(5 * SMALL + 100)
    src, tmp = direct_ok / "src.bin", direct_ok / "tmp.bin"
    src.write_bytes(data)
    direct_written, reads = [0], []
    real_pwrite, real_read_back = os.pwrite, transfer.read_back

    def pwrite(fd, buf, offset):
        n = real_pwrite(fd, buf, offset)
        direct_written[0] += n if _is_direct(fd) else 0
        return n

    def read_back(fd, lo, hi, hasher, **kw):
        reads.append((lo, hi, _is_direct(fd), kw.get("direct")))
        return real_read_back(fd, lo, hi, hasher, **kw)

    monkeypatch.setattr(os, "pwrite", pwrite)
    monkeypatch.setattr(transfer, "read_back", read_back)
    copied, d = _copy(src, tmp)
    assert copied.direct and copied.read_back_blake3 == d.blake3
    assert direct_written[0] == len(data) - len(data) % dio.ALIGN  # all but the unaligned tail
    spans = [(lo, hi) for lo, hi, *_ in reads if hi > lo]
    assert spans[0][0] == 0 and spans[-1][1] == len(data) and len(spans) > 1
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # contiguous, in order
    assert all(fd_direct and flag for lo, hi, fd_direct, flag in reads if hi > lo)


@pytest.mark.parametrize("kind", ["direct", "buffered"])
def test_a_temporary_corrupted_before_its_read_back_is_never_published(tmp_path, monkeypatch, kind):
    if kind == "direct":
        _skip_without_direct(tmp_path)
    monkeypatch.setattr(transfer, "DIRECT", kind == "direct")
    data = os.urandom(3 * SMALL)
    src, dest = tmp_path / "src.bin", tmp_path / "raw" / "dest.bin"
    src.write_bytes(data)
    real = transfer.read_back
    hit = []

    def corrupt_then_read(fd, lo, hi, hasher, **kw):
        if hi > lo and not hit:  # flip one byte on the disk between the write and its read-back
            w = os.open(os.readlink(f"/proc/self/fd/{fd}"), os.O_RDWR)
            try:
                os.pwrite(w, bytes([os.pread(w, 1, lo)[0] ^ 0xFF]), lo)
                os.fsync(w)
            finally:
                os.close(w)
            hit.append(lo)
        return real(fd, lo, hi, hasher, **kw)

    monkeypatch.setattr(transfer, "read_back", corrupt_then_read)
    st = src.stat()
    with pytest.raises(col.CollectError, match="verification failed"):
        col.copy_verified(src, dest, tag="t", expect_size=st.st_size, expect_mtime_ns=st.st_mtime_ns)
    assert hit and not dest.exists() and not list(dest.parent.glob(".*partial*"))
    assert src.read_bytes() == data  # the source is never touched


@pytest.mark.parametrize("kept", [2 * SMALL, 3 * 4096 + 123])
def test_a_partial_temporary_is_resumed_on_the_direct_path(direct_ok, monkeypatch, kept):
    seen: list[transfer.Copied] = []

    def small_chunks(*a, **kw):
        seen.append(transfer.copy_into(*a, chunk=SMALL, **kw))
        return seen[-1]

    monkeypatch.setattr(col, "copy_into", small_chunks)
    data = os.urandom(6 * SMALL + 777)
    src, dest = direct_ok / "src.bin", direct_ok / "raw" / "dest.bin"
    src.write_bytes(data)
    dest.parent.mkdir()
    partial = dest.with_name(f".{dest.name}.partial-t")
    partial.write_bytes(data[:kept])  # what a crashed copy left behind
    written = {"direct": 0, "buffered": 0}
    real_pwrite = os.pwrite

    def pwrite(fd, buf, offset):
        n = real_pwrite(fd, buf, offset)
        written["direct" if _is_direct(fd) else "buffered"] += n
        return n

    monkeypatch.setattr(os, "pwrite", pwrite)
    st, stats = src.stat(), {}
    d = col.copy_verified(src, dest, tag="t", expect_size=st.st_size, expect_mtime_ns=st.st_mtime_ns, stats=stats)
    monkeypatch.undo()
    assert dest.read_bytes() == data and d.blake3 == blake3(data).hexdigest()
    assert (stats["resumed_at"], stats["bytes_written"]) == (kept, len(data) - kept)
    assert seen[0].direct and seen[0].read_back_blake3 == d.blake3
    assert sum(written.values()) == len(data) - kept  # only the rest is written
    head = -kept % dio.ALIGN
    assert written["buffered"] == head + len(data) % dio.ALIGN  # unaligned head and tail only


def test_the_path_taken_is_logged_once(direct_ok, monkeypatch, caplog):
    monkeypatch.setattr(dio, "_said", set())
    src = direct_ok / "src.bin"
    src.write_bytes(os.urandom(10000))
    with caplog.at_level(logging.INFO, logger="microfair.transfer"):
        for n in range(2):
            _copy(src, direct_ok / f"tmp{n}.bin")
    said = [r.getMessage() for r in caplog.records if "copy engine" in r.getMessage()]
    assert said == ["collect copy engine: O_DIRECT path (writes and read-back bypass the page cache)"]


def test_a_temporary_cut_short_before_its_read_back_fails_clearly(direct_ok, monkeypatch):
    data = os.urandom(4 * SMALL)
    src, dest = direct_ok / "src.bin", direct_ok / "raw" / "dest.bin"
    src.write_bytes(data)
    real = transfer.read_back

    def truncate_then_read(fd, lo, hi, hasher, **kw):
        if hi == len(data) > lo:  # the last range: every write is done, so nothing extends the file again
            os.truncate(os.readlink(f"/proc/self/fd/{fd}"), lo + 1)  # the disk lost the rest
        return real(fd, lo, hi, hasher, **kw)

    monkeypatch.setattr(transfer, "read_back", truncate_then_read)
    monkeypatch.setattr(col, "copy_into", lambda *a, **kw: transfer.copy_into(*a, chunk=SMALL, **kw))
    st = src.stat()
    with pytest.raises(OSError, match="read back: the file ends at byte"):
        col.copy_verified(src, dest, tag="t", expect_size=st.st_size, expect_mtime_ns=st.st_mtime_ns)
    assert not dest.exists()
