"""The demo's real vendor files: every acquisition in ``MICROFAIR_TESTDATA``, landed with its companion files.

The test-data folder holds single files (``.czi``, ``.lif``, ``.oib``, ``.ims``, ``.svs``...) and
acquisitions with companions (a cellSens ``.vsi`` with its ``_<stem>_/`` folder, in a subfolder). Which
files are companions is the reader plugins' rule (:mod:`microfair.companions`); nothing here knows a
format. The README and the checksum list are not acquisitions.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from microfair.companions import companion_files, companion_roots, expected_companions, inside

log = logging.getLogger(__name__)

#: files of the test-data folder that describe it rather than being acquisitions
NOT_SAMPLES = ("README.md", "SHA256SUMS")


def sample_files(testdata: Path) -> list[Path]:
    """The main file of every acquisition below ``testdata`` (companions and the folder's notes left out)."""
    files = sorted(p for p in testdata.rglob("*") if p.is_file() and not p.name.startswith("."))
    roots = companion_roots(files)
    return [p for p in files if p.name not in NOT_SAMPLES and not inside(p, roots)]


def land_samples(testdata: Path, folder_for: Callable[[Path], Path], *, age_seconds: float = 3600) -> list[Path]:
    """Copy every acquisition into the folder ``folder_for(sample)`` names, companions beside it.

    Returns the landed main files; they and their companions get an mtime ``age_seconds`` ago (finished).
    """
    landed: list[Path] = []
    old = time.time() - age_seconds
    for sample in sample_files(testdata):
        dest = folder_for(sample) / sample.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(sample, dest)
        copied = [dest]
        targets = dict(zip(expected_companions(sample), expected_companions(dest)))
        for root, f in companion_files(sample):
            into = targets[root] / f.relative_to(root) if root.is_dir() else targets[root]
            into.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, into)
            copied.append(into)
        for p in copied:
            os.utime(p, (old, old))
        log.info("demo: landed %s (%d companion file(s))", dest, len(copied) - 1)
        landed.append(dest)
    return landed
