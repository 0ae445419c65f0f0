"""A recording stand-in for the python-irodsclient session surface that ``IrodsStore`` uses.

No iRODS server can run on the build machines and no protocol-level emulator exists, so the real
``IrodsStore`` is tested against this object. It behaves like an iRODS 4.3 server where it matters:

* checksums: ``regChksum`` makes the "server" compute ``sha2:<base64>`` over the bytes it stored;
  without it a data object has no checksum until ``chksum()``;
* an existing data object and a put without ``forceFlag`` raise ``OVERWRITE_WITHOUT_FORCE_FLAG``;
* collections: ``create(recurse=False)`` under a missing parent raises ``CollectionDoesNotExist``;
* permissions: writing, changing metadata or ACLs where the session user has no ``own``/``modify``
  raises ``CAT_NO_ACCESS_PERMISSION``; ``read`` is reported back as ``read_object``, ``write`` as
  ``modify_object``, as iRODS 4.3 does;
* AVUs: adding an AVU that is already there raises ``CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME``; a list
  of atomic operations is applied all or nothing;
* renames never overwrite (``CAT_NAME_EXISTS_AS_DATAOBJ``); ``unlink`` needs ``own``; ``unregister``
  forgets the object and leaves its file alone;
* GenQuery: ``query(cols).filter(Criterion('=', <Meta>.name|value, …))`` over data-object and
  collection metadata.

Every call is appended to ``session.calls`` as ``(manager, method, path)``.
Faults for tests: ``session.corrupt_next_put = True`` flips a byte of the next stored object.
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from irods import exception as ex
from irods import keywords as kw
from irods.access import iRODSAccess
from irods.column import Criterion
from irods.meta import iRODSMeta
from irods.models import Collection, CollectionMeta, DataObject, DataObjectMeta

CANONICAL = {"read": "read_object", "read_object": "read_object", "read object": "read_object",
             "write": "modify_object", "modify_object": "modify_object", "modify object": "modify_object",
             "own": "own"}
WRITE = {"own", "modify_object"}


def _sha2(data: bytes) -> str:
    return "sha2:" + base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


@dataclass
class _Node:
    path: str
    owner: str
    acl: dict[str, str] = field(default_factory=dict)  # user -> canonical level
    avus: list[iRODSMeta] = field(default_factory=list)


@dataclass
class _Obj(_Node):
    data: bytes = b""
    checksum: str | None = None
    physical_path: str | None = None


class _Metadata:
    def __init__(self, session: "RecordingSession", node: _Node) -> None:
        self._s, self._node = session, node

    def items(self) -> list[iRODSMeta]:
        self._s.calls.append(("metadata", "items", self._node.path))
        return [iRODSMeta(m.name, m.value, m.units) for m in self._node.avus]

    def apply_atomic_operations(self, *ops: Any) -> None:
        self._s.calls.append(("metadata", "apply_atomic_operations", self._node.path))
        self._s._require(self._node, WRITE)
        avus = [(m.name, m.value, m.units or None) for m in self._node.avus]
        for op in ops:
            key = (op.avu.name, op.avu.value, op.avu.units or None)
            if not op.avu.value:
                raise ex.SYS_INVALID_INPUT_PARAM("empty AVU value")
            if op.operation == "add":
                if key in avus:
                    raise ex.CATALOG_ALREADY_HAS_ITEM_BY_THAT_NAME(f"AVU {key} already on {self._node.path}")
                avus.append(key)
            elif op.operation == "remove":
                if key in avus:
                    avus.remove(key)
            else:
                raise ex.SYS_INVALID_INPUT_PARAM(f"unknown AVU operation {op.operation}")
        self._node.avus = [iRODSMeta(n, v, u) for n, v, u in avus]  # all or nothing


class _Handle:
    """What ``collections.get`` / ``data_objects.get`` return."""

    def __init__(self, session: "RecordingSession", node: _Node) -> None:
        self._node = node
        self.path = node.path
        self.name = posixpath.basename(node.path)
        self.metadata = _Metadata(session, node)
        if isinstance(node, _Obj):
            self.checksum = node.checksum
            self.size = len(node.data)


class _Collections:
    def __init__(self, s: "RecordingSession") -> None:
        self._s = s

    def exists(self, path: str) -> bool:
        self._s.calls.append(("collections", "exists", path))
        return posixpath.normpath(path) in self._s.colls

    def get(self, path: str) -> _Handle:
        self._s.calls.append(("collections", "get", path))
        path = posixpath.normpath(path)
        if path not in self._s.colls:
            raise ex.CollectionDoesNotExist(path)
        return _Handle(self._s, self._s.colls[path])

    def create(self, path: str, recurse: bool = True, **options: Any) -> _Handle:
        self._s.calls.append(("collections", "create", path))
        path = posixpath.normpath(path)
        if path in self._s.objs:
            raise ex.CAT_NAME_EXISTS_AS_DATAOBJ(path)
        missing = []
        p = path
        while p not in self._s.colls:
            missing.append(p)
            p = posixpath.dirname(p)
        if len(missing) > 1 and not recurse:
            raise ex.CollectionDoesNotExist(posixpath.dirname(path))
        self._s._require(self._s.colls[p], WRITE)
        for m in reversed(missing):
            self._s.colls[m] = _Node(m, self._s.username, {self._s.username: "own"})
        return _Handle(self._s, self._s.colls[path])


class _DataObjects:
    def __init__(self, s: "RecordingSession") -> None:
        self._s = s

    def exists(self, path: str) -> bool:
        self._s.calls.append(("data_objects", "exists", path))
        return posixpath.normpath(path) in self._s.objs

    def get(self, path: str) -> _Handle:
        self._s.calls.append(("data_objects", "get", path))
        path = posixpath.normpath(path)
        if path not in self._s.objs:
            raise ex.DataObjectDoesNotExist(path)
        return _Handle(self._s, self._s.objs[path])

    def _parent(self, path: str) -> _Node:
        parent = posixpath.dirname(path)
        if parent not in self._s.colls:
            raise ex.CollectionDoesNotExist(parent)
        return self._s.colls[parent]

    def _store(self, path: str, data: bytes, options: dict[str, Any], physical: str | None = None) -> None:
        parent = self._parent(path)
        old = self._s.objs.get(path)
        if old is not None:
            if kw.FORCE_FLAG_KW not in options:
                raise ex.OVERWRITE_WITHOUT_FORCE_FLAG()
            self._s._require(old, WRITE)
        else:
            self._s._require(parent, WRITE)
        if self._s.corrupt_next_put and data:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
            self._s.corrupt_next_put = False
        obj = old or _Obj(path, self._s.username, {self._s.username: "own"})
        obj.data, obj.physical_path = data, physical
        obj.checksum = _sha2(data) if kw.REG_CHKSUM_KW in options or kw.VERIFY_CHKSUM_KW in options else None
        self._s.objs[path] = obj

    def put(self, local_path: str, irods_path: str, return_data_object: bool = False, **options: Any) -> Any:
        self._s.calls.append(("data_objects", "put", irods_path))
        path = posixpath.normpath(irods_path)
        if path in self._s.colls:
            path = posixpath.join(path, Path(local_path).name)
        self._store(path, Path(local_path).read_bytes(), options)
        return self.get(path) if return_data_object else None

    def register(self, file_path: str, obj_path: str, **options: Any) -> None:
        self._s.calls.append(("data_objects", "register", obj_path))
        path = posixpath.normpath(obj_path)
        if path in self._s.objs:
            raise ex.OVERWRITE_WITHOUT_FORCE_FLAG()  # the server refuses to register over an object
        if not Path(file_path).is_file():
            raise ex.UNIX_FILE_OPEN_ERR(file_path)
        self._store(path, Path(file_path).read_bytes(), options, physical=file_path)

    def move(self, src_path: str, dest_path: str) -> None:
        self._s.calls.append(("data_objects", "move", f"{src_path} -> {dest_path}"))
        src = posixpath.normpath(src_path)
        dest = posixpath.normpath(dest_path)
        if dest in self._s.colls:
            dest = posixpath.join(dest, posixpath.basename(src))
        obj = self._s.objs.get(src)
        if obj is None:
            raise ex.CAT_NO_ROWS_FOUND(src)
        if dest in self._s.objs:
            raise ex.CAT_NAME_EXISTS_AS_DATAOBJ(dest)  # iRODS never renames onto an existing object
        self._s._require(obj, WRITE)
        self._s._require(self._parent(dest), WRITE)
        del self._s.objs[src]
        obj.path = dest  # AVUs and ACLs travel with the object, as in the catalog
        self._s.objs[dest] = obj

    def unlink(self, path: str, force: bool = False, **options: Any) -> None:
        self._s.calls.append(("data_objects", "unlink", path))
        path = posixpath.normpath(path)
        obj = self._s.objs.get(path)
        if obj is None:
            raise ex.CAT_NO_ROWS_FOUND(path)
        self._s._require(obj, {"own"})
        if not force:
            self._s.trash.append(obj)
        del self._s.objs[path]

    def unregister(self, path: str, **options: Any) -> None:
        self._s.calls.append(("data_objects", "unregister", path))
        path = posixpath.normpath(path)
        obj = self._s.objs.get(path)
        if obj is None:
            raise ex.CAT_NO_ROWS_FOUND(path)
        self._s._require(obj, {"own"})
        del self._s.objs[path]  # the file at obj.physical_path stays where it is

    def chksum(self, path: str, **options: Any) -> str:
        self._s.calls.append(("data_objects", "chksum", path))
        obj = self._s.objs.get(posixpath.normpath(path))
        if obj is None:
            raise ex.DataObjectDoesNotExist(path)
        obj.checksum = obj.checksum or _sha2(obj.data)
        return obj.checksum


class _Acls:
    def __init__(self, s: "RecordingSession") -> None:
        self._s = s

    def set(self, acl: iRODSAccess, recursive: bool = False, admin: bool = False, **kw_: Any) -> None:
        self._s.calls.append(("acls", "set", acl.path))
        root = posixpath.normpath(acl.path)
        node = self._s.colls.get(root) or self._s.objs.get(root)
        if node is None:
            raise ex.CAT_UNKNOWN_COLLECTION(root)
        if acl.user_name not in self._s.users:
            raise ex.CAT_INVALID_USER(acl.user_name)
        targets = [node]
        if recursive and root in self._s.colls:
            targets += [n for p, n in {**self._s.colls, **self._s.objs}.items() if p.startswith(root + "/")]
        for n in targets:
            self._s._require(n, {"own"})
        for n in targets:
            if acl.access_name == "null":
                n.acl.pop(acl.user_name, None)
            else:
                n.acl[acl.user_name] = CANONICAL[acl.access_name]

    def get(self, target: _Handle, **kw_: Any) -> list[iRODSAccess]:
        self._s.calls.append(("acls", "get", target.path))
        return [iRODSAccess(level, target.path, user, self._s.zone) for user, level in sorted(target._node.acl.items())]


class _Query:
    def __init__(self, s: "RecordingSession", columns: tuple[Any, ...]) -> None:
        self._s, self._columns, self._criteria = s, columns, []

    def filter(self, *criteria: Any) -> "_Query":
        self._criteria.extend(criteria)
        return self

    def _rows(self) -> list[dict[Any, Any]]:
        keys = {c.query_key.icat_key for c in self._criteria}
        on_objects = any(k in keys for k in (DataObjectMeta.name.icat_key, DataObjectMeta.value.icat_key)) or \
            any(c.icat_key == DataObject.name.icat_key for c in self._columns)
        rows = []
        nodes = self._s.objs.values() if on_objects else self._s.colls.values()
        for node in nodes:
            for m in node.avus or [None]:
                ok = True
                for c in self._criteria:
                    value = {DataObjectMeta.name.icat_key: m and m.name, DataObjectMeta.value.icat_key: m and m.value,
                             CollectionMeta.name.icat_key: m and m.name,
                             CollectionMeta.value.icat_key: m and m.value}.get(c.query_key.icat_key)
                    if c.op != "=":
                        raise NotImplementedError(f"stand-in supports '=' only, not {c.op}")
                    ok = ok and value == c.value
                if ok:
                    coll, name = (posixpath.dirname(node.path), posixpath.basename(node.path)) if on_objects \
                        else (node.path, None)
                    rows.append({Collection.name: coll, DataObject.name: name})
        unique = {tuple(r.items()): r for r in rows}
        return list(unique.values())

    def __iter__(self):
        self._s.calls.append(("query", "execute", ",".join(str(c.value) for c in self._criteria)))
        return iter(self._rows())

    def get_results(self):
        return iter(self)


class RecordingSession:
    """In-memory iRODS zone for one user; ``home_collections`` are created and owned by that user."""

    def __init__(self, zone: str = "tempZone", user: str = "rods", *, groups: tuple[str, ...] = ("microfair",),
                 writable_homes: bool = True) -> None:
        self.zone, self.username = zone, user
        self.users = {user, *groups, "public"}
        self.calls: list[tuple[str, str, str]] = []
        self.corrupt_next_put = False
        self.colls: dict[str, _Node] = {}
        self.objs: dict[str, _Obj] = {}
        self.trash: list[_Obj] = []  # objects unlinked without force
        for p in (f"/{zone}", f"/{zone}/home"):
            self.colls[p] = _Node(p, "rods-admin", {"rods-admin": "own"})
        for g in groups:
            p = f"/{zone}/home/{g}"
            self.colls[p] = _Node(p, "rods-admin", {"rods-admin": "own", **({user: "own"} if writable_homes else {})})
        self.collections = _Collections(self)
        self.data_objects = _DataObjects(self)
        self.acls = _Acls(self)

    def query(self, *columns: Any) -> _Query:
        return _Query(self, columns)

    def _require(self, node: _Node, levels: set[str]) -> None:
        if node.acl.get(self.username) not in levels:
            raise ex.CAT_NO_ACCESS_PERMISSION(f"{self.username} may not change {node.path}")

    def cleanup(self) -> None:
        self.calls.append(("session", "cleanup", ""))

    # test helpers -------------------------------------------------------------
    def calls_of(self, manager: str, method: str) -> list[str]:
        return [p for m, meth, p in self.calls if m == manager and meth == method]


def check_server_behaviour(session: Any, base: str, tmp: Path, group: str) -> None:
    """The server behaviour the stand-in claims, as assertions: run on the stand-in by the unit tests and
    on a real zone by ``tests/integration/test_irods_live.py``, so that the two cannot drift apart.

    ``base`` is a collection that does not exist yet, in a place the session user may write;
    ``group`` an existing group.
    """
    import pytest
    from irods.meta import AVUOperation

    nested = f"{base}/a/b"
    session.collections.create(nested, recurse=True)
    assert session.collections.exists(nested)
    local = tmp / "contract.bin"
    local.write_bytes(b"first version")
    obj = f"{nested}/contract.bin"
    session.data_objects.put(str(local), obj, **{kw.REG_CHKSUM_KW: ""})
    assert session.data_objects.get(obj).checksum == _sha2(b"first version")
    with pytest.raises(ex.OVERWRITE_WITHOUT_FORCE_FLAG):
        session.data_objects.put(str(local), obj)
    local.write_bytes(b"second version")
    session.data_objects.put(str(local), obj, **{kw.REG_CHKSUM_KW: "", kw.FORCE_FLAG_KW: ""})
    assert session.data_objects.get(obj).checksum == _sha2(b"second version")

    meta = session.data_objects.get(obj).metadata
    meta.apply_atomic_operations(AVUOperation(operation="add", avu=iRODSMeta("contract.a", "1")),
                                 AVUOperation(operation="add", avu=iRODSMeta("contract.b", "2", "um")))
    assert {(m.name, m.value, m.units or "") for m in session.data_objects.get(obj).metadata.items()} == \
        {("contract.a", "1", ""), ("contract.b", "2", "um")}
    with pytest.raises(ex.iRODSException):
        meta.apply_atomic_operations(AVUOperation(operation="add", avu=iRODSMeta("contract.a", "1")))
    meta.apply_atomic_operations(AVUOperation(operation="remove", avu=iRODSMeta("contract.a", "1")))
    assert [m.name for m in session.data_objects.get(obj).metadata.items()] == ["contract.b"]

    rows = list(session.query(Collection.name, DataObject.name).filter(
        Criterion("=", DataObjectMeta.name, "contract.b"), Criterion("=", DataObjectMeta.value, "2")))
    assert [f"{r[Collection.name]}/{r[DataObject.name]}" for r in rows] == [obj]

    session.acls.set(iRODSAccess("read", obj, group, session.zone))
    levels = {a.user_name: str(a.access_name) for a in session.acls.get(session.data_objects.get(obj))}
    assert levels[group] in ("read_object", "read object") and levels[session.username] == "own"

    other = f"{nested}/other.bin"
    session.data_objects.put(str(local), other, **{kw.REG_CHKSUM_KW: ""})
    with pytest.raises(ex.iRODSException):
        session.data_objects.move(other, obj)  # never onto an existing object
    session.data_objects.move(other, f"{nested}/renamed.bin")
    assert session.data_objects.exists(f"{nested}/renamed.bin") and not session.data_objects.exists(other)
    session.data_objects.unlink(f"{nested}/renamed.bin", force=True)
    assert not session.data_objects.exists(f"{nested}/renamed.bin")
