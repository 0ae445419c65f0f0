"""Compare content (a local file or a stream restored from restic) with the checksums in the ledger."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from blake3 import blake3

from microfair.checksum import CHUNK


@dataclass
class ExpectedContent:
    """The checksums the ledger holds for one file. BLAKE3 is preferred (fast), SHA-256 otherwise."""

    sha256: str | None
    blake3: str | None = None
    size: int | None = None

    def __post_init__(self) -> None:
        if not self.sha256 and not self.blake3:
            raise ValueError("no checksum in the ledger to compare with")
        self._algo = "blake3" if self.blake3 else "sha256"
        self._h = blake3(max_threads=blake3.AUTO) if self.blake3 else hashlib.sha256()
        self.read = 0

    @property
    def algorithm(self) -> str:
        return self._algo

    def update(self, data: bytes) -> None:
        self._h.update(data)
        self.read += len(data)

    @property
    def actual(self) -> str:
        return self._h.hexdigest()

    def mismatch(self) -> str | None:
        """None when the content matches; otherwise why not."""
        if self.size is not None and self.read != self.size:
            return f"size {self.read} bytes, ledger says {self.size}"
        expected = self.blake3 if self._algo == "blake3" else self.sha256
        if self.actual != expected:
            return f"{self._algo} {self.actual[:16]}… differs from the ledger's {str(expected)[:16]}…"
        return None


def check_local_file(path: str | os.PathLike[str], expected: ExpectedContent) -> str | None:
    """Hash a local file; None when it matches the ledger, else the reason (missing, unreadable, differs)."""
    try:
        with open(path, "rb", buffering=0) as f:
            while chunk := f.read(CHUNK):
                expected.update(chunk)
    except FileNotFoundError:
        return "file is missing"
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    return expected.mismatch()


def read_back_companions(rb: Any, companions: list[Any], read: Callable[[str, ExpectedContent], Any],
                         record: dict[str, Any]) -> Any:
    """Read back a dataset's companion files too, once its main file ``rb`` was read back well.

    ``companions`` are the ledger rows (role ``companion``), ``read(path, expected)`` restores one file
    from the same snapshot and returns a read-back like ``rb``. Each good read-back is written to
    ``record["companions"]`` (path → algorithm, digest), which the retention robot's copy check needs.
    Returns ``rb``, or the first failing companion read-back (its reason names the companion), so a
    damaged ``.ets`` makes the whole copy unverified.
    """
    if not getattr(rb, "ok", False) or not companions:
        return rb
    done: dict[str, dict[str, Any]] = {}
    for f in companions:
        path = os.path.realpath(f.path)
        if not (f.sha256 or f.blake3):
            record.pop("companions", None)
            return replace(rb, ok=False, path=path, digest=None,
                           reason=f"companion {path}: no checksum in the ledger to compare with")
        got = read(path, ExpectedContent(f.sha256, f.blake3, f.size_bytes))
        if not got.ok:
            record.pop("companions", None)
            return replace(got, reason=f"companion {path}: {got.reason}")
        done[path] = {"algorithm": got.algorithm, "read_back_digest": got.digest}
    record["companions"] = done
    return rb


def check_companion_files(companions: list[Any]) -> str | None:
    """Hash each companion file (ledger rows, role ``companion``) on the facility storage; None when all
    match the ledger, else which one does not and why (the primary copy of a .vsi is its .ets too)."""
    for f in companions:
        if not (f.sha256 or f.blake3):
            return f"companion {f.path}: no checksum in the ledger to compare with"
        why = check_local_file(f.path, ExpectedContent(f.sha256, f.blake3, f.size_bytes))
        if why:
            return f"companion {f.path}: {why}"
    return None
