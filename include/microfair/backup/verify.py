"""Compare content (a local file or a stream restored from restic) with the checksums in the ledger."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

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
