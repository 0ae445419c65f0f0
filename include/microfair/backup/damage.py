"""Trace damage in a repository to every dataset with content there.

Damage is reported two ways: ``restic check`` names damaged packs, and a restore
(``restic dump``) names the blob it could not decrypt. A blob is mapped to its pack with
``restic find --show-pack-id --blob``; a pack to all its blobs through the index
(``restic cat index``: a damaged pack's own header may be unreadable, which makes
``restic find --pack`` fail), and the blobs to every file (in any snapshot) that holds
one of them with ``restic find --blob``. A file belongs to a dataset when it is the dataset's raw
file, lies inside its OME-Zarr, or is one of its catalogued files (records, reports).
Deduplication means one damaged blob can hit several datasets: all of them are returned.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from microfair.backup.restic import Restic, ResticError
from microfair.ledger import Ledger

log = logging.getLogger(__name__)


@dataclass
class Damage:
    packs: set[str] = field(default_factory=set)
    blobs: set[str] = field(default_factory=set)
    paths: set[str] = field(default_factory=set)
    datasets: dict[str, list[str]] = field(default_factory=dict)  # uid → damaged paths of that dataset
    untraced: list[str] = field(default_factory=list)  # why tracing was incomplete

    def __bool__(self) -> bool:
        return bool(self.packs or self.blobs or self.untraced)

    def label(self) -> str:
        return ", ".join(sorted(p[:12] for p in self.packs)) or "unknown pack"

    def to_dict(self) -> dict[str, Any]:
        return {"packs": sorted(self.packs), "blobs": len(self.blobs), "paths": len(self.paths),
                "datasets": sorted(self.datasets), "untraced": self.untraced}


def _real(path: str | os.PathLike[str]) -> str:
    return os.path.realpath(os.fspath(path))


def trace(restic: Restic, packs: set[str], blobs: set[str]) -> Damage:
    """Packs and blobs reported damaged → the packs involved and every stored path with content in them."""
    damage = Damage(packs=set(packs), blobs=set(blobs))
    if blobs:
        try:
            found = restic.packs_of_blobs(sorted(blobs))
            damage.packs |= found
            if not found:
                damage.untraced.append(f"no pack found for blob(s) {', '.join(b[:12] for b in sorted(blobs))}")
        except ResticError as exc:
            damage.untraced.append(f"find --blob failed: {exc.reason}")
    if damage.packs:
        try:
            damage.blobs |= restic.blobs_in_packs(sorted(damage.packs))
        except ResticError as exc:
            damage.untraced.append(f"reading the index failed: {exc.reason}")
    if damage.blobs:
        try:
            damage.paths = restic.paths_of_blobs(sorted(damage.blobs))
        except ResticError as exc:
            damage.untraced.append(f"find --blob failed: {exc.reason}")
    if damage.packs and not damage.paths:  # nothing from the index: ask the packs themselves
        try:
            damage.paths = restic.paths_in_packs(sorted(damage.packs))
        except ResticError as exc:
            damage.untraced.append(f"find --pack failed: {exc.reason}")
    for why in damage.untraced:
        log.error("damage tracing incomplete: %s", why)
    return damage


def datasets_touched(ledger: Ledger, datasets: list[Any], paths: set[str]) -> dict[str, list[str]]:
    """uid → the damaged paths that belong to that dataset (raw file, inside its Zarr, catalogued files)."""
    if not paths:
        return {}
    out: dict[str, list[str]] = {}
    for ds in datasets:
        mine: list[str] = []
        raw = _real(ds.raw_path) if ds.raw_path else None
        zarr = _real(ds.zarr_path).rstrip(os.sep) + os.sep if ds.zarr_path else None
        files = {_real(f.path) for f in ledger.files(ds.uid)}
        for p in paths:
            if p == raw or p in files or (zarr and p.startswith(zarr)):
                mine.append(p)
        if mine:
            out[ds.uid] = sorted(mine)
    return out
