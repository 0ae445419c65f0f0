"""Provenance: an RO-Crate per dataset, from the acquisition to the DOI (issue 14, item 1).

* :func:`build_crate` (``crate.py``): the crate from the ledger alone;
* :func:`refresh` (``write.py``): after a stage, snapshot the facts the crate needs, rebuild it and write it
  into the OME-Zarr root and the reports folder (never fails the stage);
* :func:`check_crate` (``check.py``): the structural check the tests and ``microfair provenance --check`` run.
"""

from microfair.provenance.check import check_crate
from microfair.provenance.crate import build_crate
from microfair.provenance.digest import CRATE_NAME, tree_digest
from microfair.provenance.facts import RECORD
from microfair.provenance.write import crate_paths, refresh

__all__ = ["CRATE_NAME", "RECORD", "build_crate", "check_crate", "crate_paths", "refresh", "tree_digest"]
