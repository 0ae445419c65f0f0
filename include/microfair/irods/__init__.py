"""iRODS registration: verified transfer, AVUs in the ``microfair.*`` namespace, ACLs, GenQuery lookup.

All iRODS calls go through :class:`IrodsStore`; see ``docs/irods.md`` for the AVU scheme.
"""

from microfair.irods.avu import Avu, dataset_avus, flatten
from microfair.irods.register import (
    IrodsRegistration,
    dataset_collection,
    find_dataset,
    pending_datasets,
    register_dataset,
)
from microfair.irods.store import (
    ChecksumMismatch,
    IrodsError,
    IrodsStore,
    irods_to_sha256,
    sha256_to_irods,
)

__all__ = [
    "Avu", "ChecksumMismatch", "IrodsError", "IrodsRegistration", "IrodsStore", "dataset_avus",
    "dataset_collection", "find_dataset", "flatten", "irods_to_sha256", "pending_datasets", "register_dataset",
    "sha256_to_irods",
]
