"""The crate in a deposit: listed next to each raw file as ``<raw path>.ro-crate-metadata.json``.

:func:`crate_files` gives the deposit plan (:func:`microfair.deposit.builder.plan_deposit`) one extra
file per dataset whose reports folder holds a crate, with its SHA-256 taken when the plan is built
(the plan is rebuilt by every deposit step, and the upload checks what it sends against it). The
crate sent is the one of the upload: the deposit's own actions (accession, DOI) are added after the
record step, in the facility's copies, and reach the archive with the next submission.
"""

from __future__ import annotations

from typing import Any

from microfair.provenance.digest import CRATE_NAME, file_sha256
from microfair.provenance.write import crate_file


def crate_files(cfg: Any, ledger: Any, ds: Any, remote: str, acquisition: str | None) -> list[Any]:
    """``[DepositFile]`` for the crate of ``ds`` (none when it has no crate yet)."""
    from microfair.deposit.builder import DepositFile  # the builder imports this module

    path = crate_file(cfg, ledger, ds.uid)
    if path is None:
        return []
    return [DepositFile(ds.uid, path, f"{remote}.{CRATE_NAME}", path.stat().st_size, file_sha256(path),
                        ds.microscope, acquisition)]
