"""The crate as an iRODS data object next to the raw file: ``<collection>/<raw name>.ro-crate-metadata.json``.

Called by :func:`microfair.irods.register.register_dataset` once its stage has ended, so that the
crate sent already holds that registration. In the ``put`` mode the reports-folder crate is copied
(a small file that can be rebuilt at any time: put directly, forced, then checked against the
server's SHA-256; a wrong copy is removed). In the ``register`` mode it is registered in place; the
file changes after later stages, so when its SHA-256 differs from the catalogue's it is
unregistered and registered again (fresh checksum) at the next registration. It is left alone
when iRODS already has these bytes, so a re-run that changed nothing sends nothing.
Access is set like the rest of the experiment tree: on the collection, recursively, when the crate
was (re)written.

It carries its own AVUs (``<ns>.ro_crate_of = uid``, ``<ns>.role = ro-crate``), not ``<ns>.uid``:
a GenQuery on the uid still finds exactly the raw object and the Zarr collection.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from microfair.provenance.digest import CRATE_NAME, file_sha256
from microfair.provenance.facts import RECORD
from microfair.provenance.write import crate_paths, refresh

log = logging.getLogger(__name__)


def crate_object(reg: Any, raw_path: str) -> str:
    return f"{reg.collection}/{Path(raw_path).name}.{CRATE_NAME}"


def register_crate(cfg: Any, ledger: Any, uid: str, store: Any, reg: Any) -> str | None:
    """Refresh the crate and put it into iRODS; the logical path, or None. Never raises (logs a warning)."""
    from microfair.irods.avu import Avu  # microfair.irods imports this module
    from microfair.irods.store import irods_to_sha256

    try:
        refresh(cfg, ledger, uid)
        ds = ledger.require(uid)
        local = next((p.path for p in crate_paths(cfg, ds) if p.where == "reports"), None)
        if local is None or not local.is_file():
            raise FileNotFoundError(f"no crate in the reports folder ({local})")
        logical = crate_object(reg, ds.raw_path)
        want = file_sha256(local)
        have = irods_to_sha256(store.checksum(logical)) if store.exists(logical) else None
        if have != want:
            if cfg.irods.mode == "register":
                if have is not None:
                    store.unregister(logical)  # the file changed in place: register it again, fresh checksum
                got = irods_to_sha256(store.register(str(local), logical))
            else:
                got = irods_to_sha256(store.put(str(local), logical, force=True))
            if got != want:
                (store.unregister if cfg.irods.mode == "register" else store.remove)(logical)
                raise RuntimeError(f"iRODS has sha256 {got} for {logical}, the crate {want}: taken out again")
            # the same access as the rest of the experiment tree (set on the collection, recursively)
            store.set_access(reg.collection, "own", reg.owner, recursive=True)
            if reg.group and reg.group != reg.owner:
                store.set_access(reg.collection, "read", reg.group, recursive=True)
            log.info("%s: RO-Crate %s iRODS as %s", uid, "registered in" if cfg.irods.mode == "register"
                     else "put into", logical)
        ns = cfg.irods.avu_prefix
        store.sync_avus(logical, [Avu(f"{ns}.ro_crate_of", uid), Avu(f"{ns}.role", "ro-crate")], ns)
        body = ledger.get_record(uid, RECORD) or {}
        if body.get("irods") != {"data_object": logical, "sha256": want}:
            ledger.put_record(uid, RECORD, {**body, "irods": {"data_object": logical, "sha256": want}})
        return logical
    except Exception as exc:
        log.warning("%s: RO-Crate not registered in iRODS: %s: %s", uid, type(exc).__name__, exc)
        try:
            body = ledger.get_record(uid, RECORD) or {}
            warnings = [*(body.get("warnings") or []), {"warning": f"RO-Crate not registered in iRODS: {exc}"}]
            ledger.put_record(uid, RECORD, {**body, "warnings": warnings[-10:]})
        except Exception:
            log.warning("%s: the warning could not be recorded in the ledger either", uid)
        return None
