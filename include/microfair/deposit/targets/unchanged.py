"""What decides whether a Dataverse/Zenodo deposit is unchanged: the files' content without the RO-Crates.

A dataset's ``ro-crate-metadata.json`` (in its reports folder, beside its raw file as
``<raw>.ro-crate-metadata.json``, and in its OME-Zarr root, hence in the Zarr ZIP) changes whenever a
stage records something, the deposit itself included (its PID goes into the crate right after it). Counting it would make every re-run publish a new version, so the comparison leaves it
out: a report or raw file by its SHA-256, a Zarr archive by its entries (name, size, CRC-32 as the ZIP
records them, without the crate at the Zarr root). The current crate is still uploaded whenever a new
version is made, and with the first deposit.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Iterable

from microfair.deposit.targets.base import DepositItem
from microfair.provenance.digest import CRATE_NAME


def is_crate_name(name: str) -> bool:
    """``…/ro-crate-metadata.json`` (reports folder) or ``<raw>.ro-crate-metadata.json`` (beside the raw file)."""
    base = name.rsplit("/", 1)[-1]
    return base == CRATE_NAME or base.endswith("." + CRATE_NAME)


def is_crate(item: DepositItem) -> bool:
    return is_crate_name(item.name)


def archive_digest(item: DepositItem) -> str:
    """Digest of a Zarr ZIP's entries (name, size, CRC-32) without the crate at its root."""
    with zipfile.ZipFile(item.local) as zf:
        entries = sorted((i.filename, i.file_size, i.CRC) for i in zf.infolist()
                         if not (i.filename.count("/") == 1 and i.filename.endswith("/" + CRATE_NAME)))
    return "zip-entries:" + hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def content_fingerprint(items: Iterable[DepositItem]) -> dict[str, str]:
    """``{name in the deposit: digest}`` of every item but the crates (the "unchanged" comparison)."""
    return {i.name: archive_digest(i) if i.kind == "zarr-archive" else i.sha256 for i in items if not is_crate(i)}


def same_files(recorded: dict[str, dict], fingerprint: dict[str, str]) -> bool:
    """Whether the files recorded at the last deposit are the ones of ``fingerprint`` (crates aside).

    Only the names are compared here: the content is in the deposit's ``metadata_sha256``, computed from
    the fingerprint (a Zarr archive's recorded SHA-256 covers its crate, so it cannot be compared).
    """
    return {n for n in recorded if not is_crate_name(n)} == set(fingerprint)
