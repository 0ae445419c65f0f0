"""Deposit targets: one study file, several repositories (``bia`` | ``dataverse`` | ``zenodo``).

``TARGETS`` names each target, its Airflow connection and what its identifier is called;
:func:`microfair.deposit.targets.run.deposit` drives Dataverse and Zenodo through the common steps
(:mod:`microfair.deposit.targets.base`); :func:`microfair.deposit.targets.bia.deposit_bia` wraps the
BioImage Archive's own asynchronous path (:mod:`microfair.deposit.run`) behind the same result.
"""

from __future__ import annotations

from dataclasses import dataclass

from microfair.deposit.targets.base import (
    ChecksumMismatch,
    CollectionNotFound,
    DepositItem,
    Draft,
    LicenceRefused,
    LimitExceeded,
    Publication,
    RepositoryAuthError,
    RepositoryError,
    Target,
    TransientError,
    UploadOutcome,
)


@dataclass(frozen=True)
class TargetInfo:
    name: str
    title: str
    connection_id: str
    identifier: str  # what the persistent identifier is called


TARGETS: dict[str, TargetInfo] = {
    "bia": TargetInfo("bia", "BioImage Archive", "biostudies_default", "accession (S-BIAD…) and DOI"),
    "dataverse": TargetInfo("dataverse", "Dataverse (Recherche Data Gouv)", "dataverse_default", "DOI (doi:10.…)"),
    "zenodo": TargetInfo("zenodo", "Zenodo", "zenodo_default", "DOI (10.5281/zenodo.…)"),
}


def target_info(name: str) -> TargetInfo:
    try:
        return TARGETS[name]
    except KeyError:
        raise ValueError(f"unknown deposit target {name!r}: one of {', '.join(TARGETS)}") from None


__all__ = [
    "TARGETS", "ChecksumMismatch", "CollectionNotFound", "DepositItem", "Draft", "LicenceRefused", "LimitExceeded",
    "Publication", "RepositoryAuthError", "RepositoryError", "Target", "TargetInfo", "TransientError",
    "UploadOutcome", "target_info",
]
