"""Companion files: acquisitions that are one file *plus* a folder (or files) beside it.

cellSens writes ``slide.vsi`` and its pixels in ``_slide_/stack1/frame_t_0.ets``; Olympus FluoView
writes ``scan.oif`` and ``scan.oif.files/``. The companions belong to the acquisition: collect copies
them with it (:func:`publish_companions`), the landing scan does not offer the files inside them as
acquisitions of their own (:func:`companion_roots`), and a main file whose companions are missing is
*incomplete* (:func:`missing_companions`, reported by the reader as "missing companion files").

The rule is declared per reader plugin, never per sample or in the stages: :data:`KNOWN_COMPANIONS`
holds it by plugin name (like ``READER_OPTIONS``), and our plugins also answer
``ReaderMetadata.companion_paths(path)`` with the same function.

A file's rule is the rule of the plugin(s) that claim it by extension. Each rule maps the main
file's path to the companion paths it expects, so a version copy ``slide.v2.vsi`` gets ``_slide.v2_``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CompanionRule = Callable[[Path], list[Path]]


def vsi_folder(path: Path) -> list[Path]:
    """cellSens: ``<stem>.vsi`` keeps its pixels in ``_<stem>_/`` beside it (bioio-vsi looks there)."""
    return [path.with_name(f"_{os.path.splitext(path.name)[0]}_")]


def oif_folder(path: Path) -> list[Path]:
    """FluoView: ``<name>.oif`` keeps its plane TIFFs in ``<name>.oif.files/`` beside it; an OIB has none."""
    return [Path(f"{path}.files")] if path.name.lower().endswith(".oif") else []


#: The companion rule of each reader plugin that has companion files: plugin name -> (extensions, rule).
#: Our plugins declare the same function as ``ReaderMetadata.companion_paths`` (a unit test keeps the two
#: in step); the table exists so that the landing scan, a fresh process every few minutes, needs no
#: reader import (bioio, dask and ome-types take seconds to import, bioio-nd2 alone took 14 s here).
KNOWN_COMPANIONS: dict[str, tuple[tuple[str, ...], CompanionRule]] = {
    "microfair-vsi": ((".vsi",), vsi_folder),
    "bioio-vsi": ((".vsi",), vsi_folder),
    "microfair-oib": ((".oif",), oif_folder),
}


@lru_cache(maxsize=1)
def _rules() -> tuple[tuple[tuple[str, ...], CompanionRule, str], ...]:
    """(extensions, rule, plugin name) of the installed plugins with companion files (none is imported)."""
    from importlib.metadata import entry_points

    installed = {ep.name for ep in entry_points(group="bioio.readers")}
    ours = "microfair" in installed  # our facade carries every microfair-* sub-plugin
    return tuple((exts, rule, name) for name, (exts, rule) in KNOWN_COMPANIONS.items()
                 if name in installed or (ours and name.startswith("microfair-")))


def expected_companions(path: str | Path) -> list[Path]:
    """The companion paths a main file needs (existing or not); [] for a file without companions."""
    path = Path(path)
    name = path.name.lower()
    best: tuple[int, CompanionRule] | None = None
    for extensions, rule, _ in _rules():
        longest = max((len(e) for e in extensions if name.endswith(e)), default=0)
        if longest and (best is None or longest > best[0]):
            best = (longest, rule)
    return list(best[1](path)) if best else []


def missing_companions(path: str | Path) -> list[Path]:
    """The expected companions that are not there (a folder counts only if it holds a file)."""
    return [c for c in expected_companions(path) if not _present(c)]


def missing_message(path: str | Path, missing: list[Path]) -> str:
    """Words for the facility manager: which folder or file is expected, and where."""
    path = Path(path)
    what = ", ".join(f"'{m.name}{'/' if not m.suffix else ''}'" for m in missing)
    return (f"missing companion files: {path.name} keeps its pixels in {what} beside it in {path.parent}, "
            "which is not there; copy the acquisition with its companion folder, as the software wrote it")


def _present(path: Path) -> bool:
    if path.is_dir() and not path.is_symlink():
        return any(f.is_file() for f in path.rglob("*"))
    return path.is_file()


def companion_files(path: str | Path) -> list[tuple[Path, Path]]:
    """(companion root, file) for every regular file of the existing companions of ``path``, sorted.

    Symbolic links are not followed (they could point anywhere) and are left out with a warning.
    """
    out: list[tuple[Path, Path]] = []
    for root in expected_companions(path):
        if root.is_symlink():
            log.warning("%s: companion %s is a symbolic link and is not copied", Path(path).name, root)
            continue
        if root.is_file():
            out.append((root, root))
        elif root.is_dir():
            for f in sorted(root.rglob("*")):
                if f.is_symlink():
                    log.warning("%s: %s in its companion folder is a symbolic link and is not copied",
                                Path(path).name, f)
                elif f.is_file():
                    out.append((root, f))
    return out


def newest_change_ns(path: str | Path) -> int | None:
    """The latest mtime (ns) over the companions of ``path`` (their files and folders), or None."""
    stamps = [f.stat().st_mtime_ns for _, f in companion_files(path)]
    stamps += [r.stat().st_mtime_ns for r in expected_companions(path) if r.is_dir() and not r.is_symlink()]
    return max(stamps) if stamps else None


def companion_roots(files: Iterable[Path]) -> set[Path]:
    """The companion folders/files of every main file in ``files`` (files under them are not acquisitions)."""
    if not _rules():
        return set()
    roots: set[Path] = set()
    for f in files:
        roots.update(expected_companions(f))
    return roots


def inside(path: Path, roots: set[Path]) -> bool:
    """True when ``path`` is one of ``roots`` or lies below one of them."""
    return bool(roots) and (path in roots or any(p in roots for p in path.parents))


def publish_companions(source: Path, dest: Path, *, tag: str, copy: Callable[..., Any],
                       digest: Callable[[Path], Any], collision: type[Exception] = FileExistsError,
                       ) -> list[tuple[Path, Any]]:
    """Copy the companions of ``source`` beside ``dest`` (as the rule names them for ``dest``); returns
    (published file, digest) for each file.

    Each companion folder is written under ``.<folder>.partial-<tag>`` with ``copy`` (collect's
    checksummed, resumable :func:`~microfair.collect.copy_verified`) and then renamed into place in one
    step, never over anything: the raw tree shows a companion folder complete or not at all. A folder
    already at the final name (an earlier attempt) is adopted only if every file matches the source
    (``digest``: collect's :func:`~microfair.checksum.digest_file`); otherwise ``collision`` is raised.
    """
    from microfair.publish import rename_noreplace

    files = companion_files(source)
    targets = dict(zip(expected_companions(source), expected_companions(dest)))
    published: list[tuple[Path, Any]] = []
    for root, target in targets.items():
        members = [f for r, f in files if r == root]
        if not members:
            continue
        folder = root.is_dir()

        def final(f: Path) -> Path:
            return target / f.relative_to(root) if folder else target

        if target.exists():
            for f in members:
                there = digest(final(f)) if final(f).is_file() else None
                if there is None or there.blake3 != digest(f).blake3:
                    raise collision(f"name collision: {target} already exists and does not hold {f.name} of "
                                    f"{source.name} as it is in the landing zone")
                published.append((final(f), there))
            log.info("%s: companion %s is already in the raw tree with the same content", tag, target)
            continue
        tmp = target.with_name(f".{target.name}.partial-{tag}") if folder else None
        for f in members:
            st = f.stat()
            into = tmp / f.relative_to(root) if tmp is not None else target
            into.parent.mkdir(parents=True, exist_ok=True)
            if tmp is not None and into.is_file():  # published into the partial folder before a crash
                done = digest(into)
                if done.blake3 == digest(f).blake3:
                    published.append((final(f), done))
                    continue
                into.chmod(0o644)
                into.unlink()
            published.append((final(f), copy(f, into, tag=tag, expect_size=st.st_size,
                                             expect_mtime_ns=st.st_mtime_ns)))
        if tmp is not None:
            if not rename_noreplace(tmp, target):
                if target.exists():
                    raise collision(f"name collision: {target} appeared while the companion folder was copied")
                os.rename(tmp, target)
            log.info("%s: companion folder %s published (%d file(s))", tag, target, len(members))
    return published


def keep_companions(file: Path, target: Path, uid: str, *, move: bool,
                    keep: Callable[..., Path]) -> list[Path]:
    """Put the companions of ``file`` beside its quarantined copy ``target`` (named by the rule for ``target``).

    ``keep`` is quarantine's exclusive copy-or-move of one file; with ``move`` the emptied companion
    folders are removed from the raw tree, so a quarantined acquisition leaves nothing behind there.
    Returns where each companion file is now.
    """
    kept: list[Path] = []
    targets = dict(zip(expected_companions(file), expected_companions(target)))
    for root, f in companion_files(file):
        into = targets[root] / f.relative_to(root) if root.is_dir() else targets[root]
        into.parent.mkdir(parents=True, exist_ok=True)
        kept.append(keep(f, into, uid, move=move))
    if move:
        for root in targets:
            if root.is_dir() and not root.is_symlink():
                for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                    with contextlib.suppress(OSError):
                        d.rmdir()
                with contextlib.suppress(OSError):
                    root.rmdir()
    if kept:
        log.info("%s: %d companion file(s) of %s kept beside it in quarantine", uid, len(kept), file.name)
    return kept


def counterpart(file: str | Path, main: str | Path, other_main: str | Path) -> Path | None:
    """Where companion ``file`` of ``main`` lies beside ``other_main`` (e.g. raw tree → landing zone).

    The companion keeps its path relative to its companion root; None when ``file`` is not below a
    companion root of ``main`` (then it is not ours to map).
    """
    file = Path(file)
    for root, other in zip(expected_companions(main), expected_companions(other_main)):
        if file == root:
            return other
        if root in file.parents:
            return other / file.relative_to(root)
    return None
