"""The one way to build a path from outside input (landing-zone folders, file names, ledger values).

Every folder or file name that comes from a user, an acquisition PC, a sidecar or a
study file goes through :func:`safe_component`; every path under a storage tier is
built by :func:`safe_join`, which also proves on *resolved* paths that the result
stays inside the tier (a symlink inside the tier cannot lead out of it either).

A component is made safe in this order:

1. folded to ASCII with :func:`microfair.naming.ascii_fold` (NFKD, accents dropped;
   anything outside ``[A-Za-z0-9._-]`` becomes ``-``). This turns NUL, control
   characters, newlines, bidi overrides (U+202E), ``<script>``, ``/``, ``\\`` and the
   full-width solidus (U+FF0F) into ``-``, and look-alike dots (U+2025 ``‥``,
   full-width ``．``) into ``.``;
2. trailing dots and hyphens are removed (Windows drops trailing dots and spaces);
3. the result is *rejected* when it is empty, ``.``, ``..`` or only dots (so ``‥``,
   ``．．``, ``..-``, ``-..`` and ``' .. '`` are all refused), a Windows-reserved device
   name (``CON``, ``NUL``, ``COM1`` …, also with an extension), or longer than
   :data:`MAX_COMPONENT_BYTES` (so that ``.<name>.partial-<uid>`` temporaries still
   fit in the usual 255-byte limit);
4. a leading dot becomes ``_.`` so that nothing from outside is hidden or can look
   like one of our temporaries.

Folding first and validating the folded text is the point: a check on the raw text
misses every Unicode look-alike.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from microfair.naming import ascii_fold

#: Longest component, in UTF-8 bytes (the temporary ``.<name>.partial-mf-<16 hex>`` adds 29).
MAX_COMPONENT_BYTES = 200
#: Longest whole path we build (Linux PATH_MAX is 4096; a PostgreSQL unique index entry holds ~2700 bytes).
MAX_PATH_BYTES = 2600

_RESERVED = re.compile(r"^(CON|PRN|AUX|NUL|COM[0-9]|LPT[0-9]|CONIN\$|CONOUT\$)$", re.IGNORECASE)


class UnsafeName(ValueError):
    """A name from outside cannot be made into a safe path component; the message says why."""


def safe_component(text: str) -> str:
    """``text`` as one safe path component (see the module docstring), or :class:`UnsafeName`."""
    if not isinstance(text, str):
        raise UnsafeName(f"{text!r} is not a text name")
    folded = ascii_fold(text).rstrip(".-")
    if not folded or set(folded) == {"."}:
        raise UnsafeName(f"name {text!r} folds to {ascii_fold(text)!r}, which is not a usable folder or file name")
    if _RESERVED.match(folded.split(".", 1)[0]):
        raise UnsafeName(f"name {text!r} is a reserved device name on Windows ({folded.split('.', 1)[0]})")
    if folded.startswith("."):
        folded = "_" + folded
    size = len(folded.encode("utf-8"))
    if size > MAX_COMPONENT_BYTES:
        raise UnsafeName(f"name {text[:40]!r}… is {size} bytes long after folding; at most "
                         f"{MAX_COMPONENT_BYTES} bytes are allowed")
    return folded


def safe_join(tier: str | os.PathLike[str], *components: str) -> Path:
    """``tier/<c1>/<c2>/…`` with every component made safe, proven to resolve inside ``tier``."""
    tier = Path(tier)
    path = tier.joinpath(*(safe_component(c) for c in components))
    return contained(tier, path)


def contained(tier: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """``path`` itself if it resolves inside ``tier`` (symlinks followed), else :class:`UnsafeName`."""
    tier, path = Path(tier), Path(path)
    if len(os.fsencode(path)) > MAX_PATH_BYTES:
        raise UnsafeName(f"path {str(path)[:60]}… is longer than {MAX_PATH_BYTES} bytes")
    root = tier.resolve()
    resolved = path.resolve()
    if resolved == root or not resolved.is_relative_to(root):
        raise UnsafeName(f"{path} resolves to {resolved}, outside {root}")
    return path


def safe_relpath(*components: str) -> str:
    """A relative POSIX path (for manifests and file lists) built from safe components only."""
    if not components:
        raise UnsafeName("an empty relative path")
    return PurePosixPath(*(safe_component(c) for c in components)).as_posix()


def check_relpath(rel: str) -> str:
    """``rel`` unchanged if it is relative, without empty, ``.`` or ``..`` parts, else :class:`UnsafeName`."""
    pure = PurePosixPath(rel)
    if not rel or pure.is_absolute() or "\\" in rel or "\x00" in rel:
        raise UnsafeName(f"{rel!r} is not a relative path")
    if any(part in ("", ".", "..") for part in rel.split("/")):
        raise UnsafeName(f"{rel!r} has an empty, '.' or '..' part")
    return rel
