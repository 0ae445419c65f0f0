"""``IrodsStore``: every iRODS call microfair makes, behind one small interface.

It wraps a python-irodsclient ``iRODSSession`` and uses only this part of its surface
(which is also what the recording stand-in in ``microfair.standins.irods`` implements):

* ``session.collections``: ``create(path, recurse=True)``, ``exists``, ``get``, ``register``
* ``session.data_objects``: ``put(local, logical, **{regChksum, forceFlag, destRescName})``,
  ``register(file, logical, **opts)``, ``exists``, ``get`` (``.checksum``, ``.size``), ``chksum``,
  ``move(src, dest)``, ``unlink(path, force=True)``, ``unregister(path)``
* ``<object or collection>.metadata``: ``items()``, ``apply_atomic_operations(*AVUOperation)``
* ``session.acls``: ``set(iRODSAccess, recursive=)``, ``get(object or collection)``
* ``session.query(...)``: GenQuery on ``DataObjectMeta`` / ``CollectionMeta``
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from microfair.irods.avu import Avu, in_namespace

log = logging.getLogger(__name__)

#: Access levels that let a user change or delete data (iRODS 4.2 and 4.3+ spellings).
WRITE_LEVELS = frozenset({"own", "write", "modify_object", "modify object", "delete_object", "delete object",
                          "create_object", "create object", "modify_metadata", "modify metadata",
                          "delete_metadata", "delete metadata", "create_metadata", "create metadata"})


#: Suffix of a data object being uploaded: verified, then renamed to its final name.
PARTIAL_SUFFIX = ".microfair-partial"
#: Suffix of the previous version while it is being replaced.
OLD_SUFFIX = ".microfair-old"


class IrodsError(RuntimeError):
    """An iRODS operation failed; the message says which object and why, in plain words."""


class ChecksumMismatch(IrodsError):
    pass


def sha256_to_irods(hex_digest: str) -> str:
    """Ledger SHA-256 (hex) → iRODS checksum string (``sha2:<base64>``)."""
    return "sha2:" + base64.b64encode(bytes.fromhex(hex_digest)).decode("ascii")


def irods_to_sha256(checksum: str | None) -> str | None:
    """iRODS ``sha2:<base64>`` → hex, or None for another scheme (e.g. an MD5 zone)."""
    if not checksum or not checksum.startswith("sha2:"):
        return None
    return base64.b64decode(checksum[5:]).hex()


@dataclass(frozen=True)
class Access:
    user: str
    level: str

    @property
    def writable(self) -> bool:
        return self.level.lower() in WRITE_LEVELS


def _explain(exc: Exception) -> str:
    name = type(exc).__name__
    text = str(exc).strip()
    return f"{name}: {text}" if text and text != name else name


class IrodsStore:
    """iRODS operations on one session.

    :param session: an ``irods.session.iRODSSession`` (or the test stand-in).
    :param resource: destination resource for puts and registrations (server default when None).
    """

    def __init__(self, session: Any, *, resource: str | None = None) -> None:
        self.session = session
        self.resource = resource

    @property
    def zone(self) -> str:
        return self.session.zone

    @property
    def user(self) -> str:
        return self.session.username

    # -- collections ------------------------------------------------------------
    def ensure_collection(self, path: str) -> None:
        from irods.exception import iRODSException

        if self.session.collections.exists(path):
            return
        try:
            self.session.collections.create(path, recurse=True)
        except iRODSException as exc:
            raise IrodsError(f"cannot create collection {path}: {_explain(exc)}") from exc

    def collection_exists(self, path: str) -> bool:
        return bool(self.session.collections.exists(path))

    # -- data objects -------------------------------------------------------------
    def exists(self, logical: str) -> bool:
        return bool(self.session.data_objects.exists(logical))

    def checksum(self, logical: str) -> str | None:
        """The server's checksum of a data object (computed now when it has none yet)."""
        obj = self.session.data_objects.get(logical)
        if getattr(obj, "checksum", None):
            return obj.checksum
        return self.session.data_objects.chksum(logical) or None

    def size(self, logical: str) -> int:
        return int(self.session.data_objects.get(logical).size)

    def _options(self, **extra: str) -> dict[str, str]:
        from irods import keywords as kw

        opts = {kw.REG_CHKSUM_KW: "", **extra}
        if self.resource:
            opts[kw.DEST_RESC_NAME_KW] = self.resource
        return opts

    def put(self, local: str, logical: str, *, force: bool = False) -> str | None:
        """Upload ``local``; the server computes its checksum (returned, ``sha2:…``)."""
        from irods import keywords as kw
        from irods.exception import iRODSException

        opts = self._options(**({kw.FORCE_FLAG_KW: ""} if force else {}))
        try:
            self.session.data_objects.put(local, logical, **opts)
        except iRODSException as exc:
            raise IrodsError(f"cannot put {local} to {logical}: {_explain(exc)}") from exc
        return self.checksum(logical)

    def register(self, local: str, logical: str) -> str | None:
        """Register a file the server can see in place (no copy); the server checksums it."""
        from irods.exception import iRODSException

        try:
            self.session.data_objects.register(local, logical, **self._options())
        except iRODSException as exc:
            raise IrodsError(f"cannot register {local} as {logical}: {_explain(exc)}") from exc
        return self.checksum(logical)

    def move(self, src: str, dest: str) -> None:
        """Rename a data object (a catalog operation: atomic, no data moved)."""
        from irods.exception import iRODSException

        try:
            self.session.data_objects.move(src, dest)
        except iRODSException as exc:
            raise IrodsError(f"cannot rename {src} to {dest}: {_explain(exc)}") from exc

    def remove(self, logical: str) -> None:
        """Delete a data object for good (no trash); nothing happens when it is not there."""
        from irods.exception import iRODSException

        if not self.exists(logical):
            return
        try:
            self.session.data_objects.unlink(logical, force=True)
        except iRODSException as exc:
            raise IrodsError(f"cannot remove {logical}: {_explain(exc)}") from exc

    def unregister(self, logical: str) -> None:
        """Forget a registered data object, leaving its file on disk."""
        from irods.exception import iRODSException

        try:
            self.session.data_objects.unregister(logical)
        except iRODSException as exc:
            raise IrodsError(f"cannot unregister {logical}: {_explain(exc)}") from exc

    def replace(self, src: str, dest: str) -> None:
        """Rename ``src`` to ``dest``, replacing a data object already at ``dest``.

        iRODS refuses to rename onto an existing object, so the old one is first renamed aside
        (``<dest>.microfair-old``) and deleted only once the new one is in place.
        """
        old = dest + OLD_SUFFIX
        self.remove(old)  # left by an interrupted replace
        if self.exists(dest):
            self.move(dest, old)
        self.move(src, dest)
        self.remove(old)

    # -- metadata -----------------------------------------------------------------
    def _target(self, path: str) -> Any:
        if self.session.data_objects.exists(path):
            return self.session.data_objects.get(path)
        return self.session.collections.get(path)

    def avus(self, path: str) -> list[Avu]:
        return sorted(Avu(m.name, m.value, m.units or "") for m in self._target(path).metadata.items())

    def sync_avus(self, path: str, wanted: Iterable[Avu], namespace: str) -> tuple[int, int]:
        """Make the namespace's AVUs on ``path`` exactly ``wanted``, in one atomic request.

        AVUs outside the namespace (set by people or other tools) are left alone. Returns
        (added, removed); a re-run with the same records changes nothing.
        """
        from irods.exception import iRODSException
        from irods.meta import AVUOperation, iRODSMeta

        target = self._target(path)
        current = {Avu(m.name, m.value, m.units or "") for m in target.metadata.items()}
        current = {a for a in current if in_namespace(namespace, [a.attribute])}
        wanted = set(wanted)
        remove, add = sorted(current - wanted), sorted(wanted - current)
        ops = [AVUOperation(operation="remove", avu=iRODSMeta(a.attribute, a.value, a.unit or None))
               for a in remove]
        ops += [AVUOperation(operation="add", avu=iRODSMeta(a.attribute, a.value, a.unit or None)) for a in add]
        if ops:
            try:
                target.metadata.apply_atomic_operations(*ops)
            except iRODSException as exc:
                raise IrodsError(f"cannot write metadata on {path}: {_explain(exc)}") from exc
        return len(add), len(remove)

    # -- access control -------------------------------------------------------------
    def set_access(self, path: str, level: str, user: str, *, recursive: bool = False) -> None:
        from irods.access import iRODSAccess
        from irods.exception import iRODSException

        try:
            self.session.acls.set(iRODSAccess(level, path, user, self.zone), recursive=recursive)
        except iRODSException as exc:
            raise IrodsError(f"cannot give {user} {level} on {path}: {_explain(exc)}") from exc

    def access(self, path: str) -> list[Access]:
        return [Access(a.user_name, str(a.access_name)) for a in self.session.acls.get(self._target(path))]

    # -- lookup -----------------------------------------------------------------------
    def find(self, attribute: str, value: str) -> list[str]:
        """Logical paths of the data objects and collections carrying ``attribute = value`` (GenQuery)."""
        from irods.column import Criterion
        from irods.models import Collection, CollectionMeta, DataObject, DataObjectMeta

        found = []
        q = self.session.query(Collection.name, DataObject.name).filter(
            Criterion("=", DataObjectMeta.name, attribute), Criterion("=", DataObjectMeta.value, value))
        found += [f"{row[Collection.name]}/{row[DataObject.name]}" for row in q]
        q = self.session.query(Collection.name).filter(
            Criterion("=", CollectionMeta.name, attribute), Criterion("=", CollectionMeta.value, value))
        found += [row[Collection.name] for row in q]
        return sorted(set(found))
