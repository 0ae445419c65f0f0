"""Register one dataset in iRODS: collection tree, verified transfer, AVUs, ACLs, lookup check.

    /<zone>/home/<group>/<project>/<study>/<experiment>/
        <raw file>                 data object: every AVU of the dataset (microfair.uid = ledger uid)
        _<stem>_/…                 its companion files (a .vsi's .ets; ledger role companion), same layout:
                                   microfair.uid, role companion, their own checksum, companion_of
        <name>.ome.zarr/…          collection (when irods.include_zarr): microfair.uid + role
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from microfair.checksum import digest_file
from microfair.irods.avu import Avu, dataset_avus
from microfair.irods.store import (
    PARTIAL_SUFFIX,
    ChecksumMismatch,
    IrodsError,
    IrodsStore,
    irods_to_sha256,
    sha256_to_irods,
)
from microfair.provenance.irods import register_crate
from microfair.safepath import UnsafeName, safe_component

log = logging.getLogger(__name__)

READY_STATES = ("qc_done",)
RECORD = "irods"


@dataclass
class IrodsRegistration:
    uid: str
    mode: str
    collection: str
    data_object: str
    checksum: str
    zarr_collection: str | None = None
    companions: list[str] = field(default_factory=list)     # logical paths of the companion files
    transferred: list[str] = field(default_factory=list)   # logical paths written in this run
    unchanged: int = 0                                       # objects already there with the right checksum
    avus_added: int = 0
    avus_removed: int = 0
    owner: str = ""
    group: str = ""
    companions_sha256: dict[str, str] = field(default_factory=dict, repr=False)
    registered_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("companions_sha256")
        d["transferred"] = len(self.transferred)
        d["objects"] = d["checksums_verified"] = len(self.transferred) + self.unchanged
        return d


def _segment(value: str | None, fallback: str) -> str:
    """A collection name from a ledger value, made safe (:func:`microfair.safepath.safe_component`:
    folded, no slashes, never ``.`` or ``..``); ``fallback`` when there is none or it cannot be made safe."""
    try:
        return safe_component(value or "")
    except UnsafeName:
        return fallback


def project_group(cfg: Any, project: str | None) -> str:
    defaults = cfg.project_defaults(project) if project else None
    return (defaults.group if defaults and defaults.group else None) or cfg.irods.home_group


def dataset_collection(cfg: Any, ds: Any, zone: str) -> str:
    group = project_group(cfg, ds.project)
    parts = [_segment(ds.project, "no-project"), _segment(ds.study, "no-study"),
             _segment(ds.experiment, "no-experiment")]
    return "/".join([f"/{zone}/home", group, *parts])


def _parameters(cfg: Any) -> dict[str, Any]:
    return {"conversion": cfg.conversion.model_dump(mode="json"), "qc": cfg.qc.model_dump(mode="json"),
            "irods": {"mode": cfg.irods.mode}}


def _verify(checksum: str | None, expected: str, logical: str) -> None:
    got = irods_to_sha256(checksum)
    if got is None:
        raise IrodsError(f"iRODS gave no SHA-256 checksum for {logical} (got {checksum!r}); "
                         "set the zone's default hash scheme to SHA256")
    if got != expected:
        raise ChecksumMismatch(f"checksum mismatch for {logical}: iRODS has {checksum}, the ledger "
                               f"{sha256_to_irods(expected)} (sha256 {expected}); the file changed or the "
                               "transfer was corrupted")


def transfer_file(store: IrodsStore, mode: str, local: str, logical: str, sha256_hex: str, uid: str) -> bool:
    """Put or register ``local`` as ``logical`` and check the server's SHA-256 against ``sha256_hex``.

    ``put``: uploaded to ``<logical>.microfair-partial`` with a server-side checksum, verified, then
    renamed (a catalog operation) over ``logical``; a failed check deletes the partial object, so a
    wrong copy never appears under the final name. ``register``: registered in place and verified;
    a failed check unregisters it again (the file stays on disk).

    Returns True when something was written, False when the object was already there, intact.
    A present object with another checksum is replaced (put) or refused (register).
    """
    expected = sha256_hex.lower()
    if store.exists(logical):
        have = irods_to_sha256(store.checksum(logical))
        if have == expected:
            log.info("%s: %s already in iRODS with the same SHA-256; not transferred again", uid, logical)
            return False
        if mode == "register":
            raise IrodsError(f"{logical} is already registered with another checksum ({have}); "
                             f"expected {sha256_to_irods(expected)}: unregister it by hand first")
        log.warning("%s: %s exists in iRODS with another checksum (%s): replacing it", uid, logical, have)
    if mode == "register":
        checksum = store.register(local, logical)
        try:
            _verify(checksum, expected, logical)
        except IrodsError:
            store.unregister(logical)
            raise
        return True
    partial = logical + PARTIAL_SUFFIX
    if store.exists(partial):
        log.info("%s: %s was left by an interrupted run; uploading again", uid, partial)
    checksum = store.put(local, partial, force=True)
    try:
        _verify(checksum, expected, logical)
    except IrodsError:
        store.remove(partial)
        raise
    store.replace(partial, logical)
    return True


def _transfer_tree(store: IrodsStore, mode: str, root: Path, coll: str, uid: str,
                   reg: IrodsRegistration) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = Path(dirpath).relative_to(root)
        target = coll if rel == Path(".") else f"{coll}/{rel.as_posix()}"
        store.ensure_collection(target)
        for name in sorted(filenames):
            if rel == Path(".") and name == "ro-crate-metadata.json":
                continue  # changes after every stage: sent as its own object (microfair.provenance.irods)
            local = Path(dirpath) / name
            logical = f"{target}/{name}"
            if transfer_file(store, mode, str(local), logical, digest_file(local).sha256, uid):
                reg.transferred.append(logical)
            else:
                reg.unchanged += 1


def _transfer_companions(store: IrodsStore, mode: str, ledger: Any, ds: Any, coll: str, data_object: str,
                         reg: IrodsRegistration) -> None:
    """Put (or register) each companion file of ``ds`` under ``coll`` with its folder layout relative to the
    raw file, the server's SHA-256 checked against the ledger's (:func:`transfer_file`)."""
    base = Path(ds.raw_path).parent
    for f in ledger.files(ds.uid, "companion"):
        if not f.sha256:
            raise IrodsError(f"{ds.uid}: the ledger has no SHA-256 for companion file {f.path}")
        if not Path(f.path).is_file():
            raise IrodsError(f"{ds.uid}: companion file {f.path} of {Path(data_object).name} is missing")
        parts = [safe_component(p) for p in Path(f.path).relative_to(base).parts]
        logical = "/".join([coll, *parts])
        store.ensure_collection(logical.rsplit("/", 1)[0])
        if transfer_file(store, mode, f.path, logical, f.sha256, ds.uid):
            reg.transferred.append(logical)
        else:
            reg.unchanged += 1
        reg.companions.append(logical)
        reg.companions_sha256[logical] = f.sha256


def register_dataset(cfg: Any, ledger: Any, uid: str, store: IrodsStore, ctx: Any = None) -> IrodsRegistration:
    """Register dataset ``uid`` in iRODS; idempotent (a re-run transfers nothing and duplicates no AVU).

    Raises :class:`IrodsError` (recorded in the ledger as the stage failure) on any problem.
    """
    ds = ledger.require(uid)
    ns = cfg.irods.avu_prefix
    mode = cfg.irods.mode
    with ledger.stage(uid, "irods", ctx) as outcome:
        if ds.state not in READY_STATES:
            raise IrodsError(f"{uid} is {ds.state!r}; iRODS registration needs a dataset past QC ({READY_STATES})")
        if not ds.raw_path or not Path(ds.raw_path).is_file():
            raise IrodsError(f"{uid}: raw file {ds.raw_path!r} is missing")
        if not ds.sha256:
            raise IrodsError(f"{uid}: the ledger has no SHA-256 for the raw file")
        coll = dataset_collection(cfg, ds, store.zone)
        data_object = f"{coll}/{safe_component(Path(ds.raw_path).name)}"
        owner = cfg.irods.owner or store.user
        group = project_group(cfg, ds.project)
        reg = IrodsRegistration(uid=uid, mode=mode, collection=coll, data_object=data_object,
                                checksum=sha256_to_irods(ds.sha256), owner=owner, group=group)
        log.info("%s: registering %s in iRODS as %s (%s)", uid, ds.raw_path, data_object, mode)
        store.ensure_collection(coll)
        _transfer_companions(store, mode, ledger, ds, coll, data_object, reg)  # first: never a .vsi without .ets
        if transfer_file(store, mode, ds.raw_path, data_object, ds.sha256, uid):
            reg.transferred.append(data_object)
        else:
            reg.unchanged += 1

        zarr = Path(ds.zarr_path) if ds.zarr_path else None
        if cfg.irods.include_zarr and zarr is not None and zarr.is_dir():
            reg.zarr_collection = f"{coll}/{zarr.name}"
            _transfer_tree(store, mode, zarr, reg.zarr_collection, uid, reg)

        records = {k: ledger.get_record(uid, k)
                   for k in ("dublin_core", "rembi", "image_metadata", "qc", "eln", "publications")}
        reg.avus_added, reg.avus_removed = store.sync_avus(
            data_object, dataset_avus(ns, ds, records, _parameters(cfg)), ns)
        for logical, sha in reg.companions_sha256.items():
            wanted = dataset_avus(ns, ds, records, role="companion") + [
                Avu(f"{ns}.checksum.sha256", sha), Avu(f"{ns}.companion_of", data_object)]
            a, r = store.sync_avus(logical, sorted(set(wanted)), ns)
            reg.avus_added, reg.avus_removed = reg.avus_added + a, reg.avus_removed + r
        if reg.zarr_collection:
            a, r = store.sync_avus(reg.zarr_collection, dataset_avus(ns, ds, records, role="zarr"), ns)
            reg.avus_added, reg.avus_removed = reg.avus_added + a, reg.avus_removed + r

        # Owner: own. Project group: read, on the whole experiment tree. Never write on raw data.
        store.set_access(coll, "own", owner, recursive=True)
        if group == owner:
            log.warning("%s: the project group %r is the owner itself; no group access granted", uid, group)
        else:
            store.set_access(coll, "read", group, recursive=True)
        acl = store.access(data_object)
        bad = [a for a in acl if a.user == group and a.writable and group != owner]
        if bad:
            raise IrodsError(f"{data_object}: group {group} still has {bad[0].level} on raw data")
        if not any(a.user == owner and a.level.lower() == "own" for a in acl):
            raise IrodsError(f"{data_object}: {owner} does not own the raw data object (ACL {acl})")

        found = store.find(f"{ns}.uid", uid)
        if data_object not in found:
            raise IrodsError(f"{uid}: GenQuery on {ns}.uid does not find {data_object} (found {found})")
        lost = [c for c in reg.companions if c not in found]
        if lost:
            raise IrodsError(f"{uid}: GenQuery on {ns}.uid does not find companion {lost[0]}")

        ledger.put_record(uid, RECORD, reg.to_dict())
        outcome.bytes = ds.size_bytes if data_object in reg.transferred else 0
        outcome.checksum = reg.checksum
        outcome.details = {k: v for k, v in reg.to_dict().items() if k != "registered_at"}
        log.info("%s: in iRODS at %s: %d object(s) written, %d unchanged, AVUs +%d/-%d, owner %s, group %s read",
                 uid, data_object, len(reg.transferred), reg.unchanged, reg.avus_added, reg.avus_removed,
                 owner, group)
    register_crate(cfg, ledger, uid, store, reg)  # after the stage: the crate sent holds this registration
    return reg


def find_dataset(store: IrodsStore, uid: str, namespace: str = "microfair") -> list[str]:
    """Where dataset ``uid`` is in iRODS (GenQuery on its ``<namespace>.uid`` AVU)."""
    return store.find(f"{namespace}.uid", uid)


def pending_datasets(ledger: Any, project: str | None = None) -> list[str]:
    """Datasets past QC whose iRODS registration has not succeeded yet."""
    out = []
    for ds in ledger.datasets(state="qc_done", project=project):
        st = ledger.stage_states(ds.uid).get("irods")
        if st is None or st.state not in ("succeeded",):
            out.append(ds.uid)
    return out
