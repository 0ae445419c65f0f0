"""One digest for a whole folder tree (an OME-Zarr): what the crate lists instead of its thousands of files.

The tree digest is the SHA-256 of a manifest with one line per file, sorted by path::

    <relative posix path>\\t<size in bytes>\\t<sha256 of the file>\\n

so it changes when any file is added, removed, renamed or changed, and anyone can recompute it
with ``find`` and ``sha256sum``. The crate's own ``ro-crate-metadata.json`` at the root (and its
temporary name while it is written) is left out: the crate cannot contain its own digest.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ALGORITHM = "sha256 of sorted '<path>\\t<size>\\t<sha256>' lines (microfair tree digest v1)"
CRATE_NAME = "ro-crate-metadata.json"
_SKIP_AT_ROOT = (CRATE_NAME, f".{CRATE_NAME}.tmp")


@dataclass(frozen=True)
class TreeDigest:
    sha256: str
    files: int
    bytes: int
    algorithm: str = ALGORITHM

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def file_sha256(path: str | os.PathLike[str]) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def tree_digest(root: str | os.PathLike[str]) -> TreeDigest:
    """The tree digest of folder ``root`` (symbolic links are not followed)."""
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a folder")
    lines: list[str] = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = Path(dirpath).relative_to(root)
        for name in filenames:
            if rel_dir == Path(".") and name in _SKIP_AT_ROOT:
                continue
            path = Path(dirpath) / name
            size = path.stat().st_size
            total += size
            lines.append(f"{(rel_dir / name).as_posix()}\t{size}\t{file_sha256(path)}\n")
    lines.sort()
    manifest = hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()
    return TreeDigest(manifest, len(lines), total)
