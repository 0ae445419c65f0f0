"""iRODS registration through the real IrodsStore against the recording stand-in of the session."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("irods")

from sqlalchemy.engine import make_url  # noqa: E402

from microfair.ingest import convert_dataset, qc_dataset  # noqa: E402
from microfair.irods.store import OLD_SUFFIX, PARTIAL_SUFFIX  # noqa: E402
from microfair.irods import (  # noqa: E402
    ChecksumMismatch,
    IrodsError,
    IrodsStore,
    dataset_collection,
    find_dataset,
    irods_to_sha256,
    pending_datasets,
    register_dataset,
    sha256_to_irods,
)
from tests.support.synthetic_ingest import ingest_synthetic  # noqa: E402
from microfair.standins.irods import RecordingSession  # noqa: E402


@pytest.fixture
def ready(facility_config, ledger):
    """Two synthetic DEMO datasets taken through collect → validate → convert → qc."""
    uids = ingest_synthetic(facility_config, ledger, n=2)
    for uid in uids:
        convert_dataset(facility_config, ledger, uid)
        qc_dataset(facility_config, ledger, uid)
        assert ledger.require(uid).state == "qc_done"
    return facility_config, ledger, uids


def session(**kw) -> RecordingSession:
    return RecordingSession(groups=("microfair", "demo"), **kw)


def test_checksum_conversion_matches_the_irods_sha2_format():
    data = b"microscope bytes"
    hexd = hashlib.sha256(data).hexdigest()
    assert sha256_to_irods(hexd) == "sha2:" + base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert irods_to_sha256(sha256_to_irods(hexd)) == hexd
    assert irods_to_sha256("0cc175b9c0f1b6a831c399e269772661") is None  # an MD5 zone


def test_put_verifies_the_server_checksum_and_writes_avus_acls(ready):
    cfg, ledger, uids = ready
    s = session()
    reg = register_dataset(cfg, ledger, uids[0], IrodsStore(s))
    ds = ledger.require(uids[0])
    assert reg.collection == dataset_collection(cfg, ds, "tempZone") == f"/tempZone/home/demo/{ds.project}/{ds.study}/{ds.experiment}"
    obj = s.objs[reg.data_object]
    assert obj.data == open(ds.raw_path, "rb").read()
    assert irods_to_sha256(obj.checksum) == ds.sha256
    assert reg.zarr_collection and any(p.startswith(reg.zarr_collection + "/") for p in s.objs)
    avus = {(m.name, m.value) for m in obj.avus}
    assert ("microfair.uid", uids[0]) in avus and ("microfair.checksum.sha256", ds.sha256) in avus
    assert any(n.startswith("microfair.dc.") for n, _ in avus) and any(n.startswith("microfair.rembi.") for n, _ in avus)
    assert any(n.startswith("microfair.qc.") for n, _ in avus) and any(n.startswith("microfair.prov.") for n, _ in avus)
    assert obj.acl["demo"] == "read_object" and obj.acl["rods"] == "own"
    for node in [*s.objs.values(), *(c for p, c in s.colls.items() if p.startswith(reg.collection))]:
        assert node.acl.get("demo") not in ("own", "modify_object"), node.path
    assert find_dataset(IrodsStore(s), uids[0]) == [reg.data_object] or reg.data_object in find_dataset(IrodsStore(s), uids[0])
    rec = ledger.get_record(uids[0], "irods")
    assert rec["data_object"] == reg.data_object and rec["checksum"] == sha256_to_irods(ds.sha256)
    assert ledger.stage_states(uids[0])["irods"].state == "succeeded"
    assert pending_datasets(ledger) == [uids[1]]


def test_a_rerun_transfers_nothing_and_never_duplicates_avus(ready):
    cfg, ledger, uids = ready
    s = session()
    first = register_dataset(cfg, ledger, uids[0], IrodsStore(s))
    n_avus = len(s.objs[first.data_object].avus)
    puts = len(s.calls_of("data_objects", "put"))
    again = register_dataset(cfg, ledger, uids[0], IrodsStore(s))
    assert again.transferred == [] and again.unchanged == len(first.transferred)
    assert (again.avus_added, again.avus_removed) == (0, 0)
    assert len(s.objs[first.data_object].avus) == n_avus
    assert len(s.calls_of("data_objects", "put")) == puts
    # A changed record updates its AVU in place: one removed, one added, no duplicate.
    rec = ledger.get_record(uids[0], "dublin_core")
    rec["title"] = "A corrected title for this dataset"
    ledger.put_record(uids[0], "dublin_core", rec)
    third = register_dataset(cfg, ledger, uids[0], IrodsStore(s))
    titles = [m.value for m in s.objs[first.data_object].avus if m.name == "microfair.dc.title"]
    assert titles == ["A corrected title for this dataset"] and third.avus_added == third.avus_removed == 1


def test_register_mode_registers_in_place_and_refuses_a_different_object(ready):
    cfg, ledger, uids = ready
    cfg.irods.mode = "register"
    s = session()
    reg = register_dataset(cfg, ledger, uids[0], IrodsStore(s))
    ds = ledger.require(uids[0])
    assert s.objs[reg.data_object].physical_path == ds.raw_path
    assert s.calls_of("data_objects", "register") and not s.calls_of("data_objects", "put")
    s.objs[reg.data_object].data = b"something else"
    s.objs[reg.data_object].checksum = "sha2:" + base64.b64encode(hashlib.sha256(b"x").digest()).decode()
    with pytest.raises(IrodsError, match="already registered with another checksum"):
        register_dataset(cfg, ledger, uids[0], IrodsStore(s))
    assert ledger.stage_states(uids[0])["irods"].state == "failed"


def test_an_overwrite_without_force_is_refused_like_the_server(tmp_path):
    s = session()
    f = tmp_path / "a.bin"
    f.write_bytes(b"abc")
    store = IrodsStore(s)
    store.ensure_collection("/tempZone/home/demo/x")
    store.put(str(f), "/tempZone/home/demo/x/a.bin")
    with pytest.raises(IrodsError, match="OVERWRITE_WITHOUT_FORCE_FLAG"):
        store.put(str(f), "/tempZone/home/demo/x/a.bin")
    store.put(str(f), "/tempZone/home/demo/x/a.bin", force=True)


def test_a_corrupted_transfer_is_caught_by_the_checksum_and_recorded(ready, caplog):
    cfg, ledger, uids = ready
    s = session()
    s.corrupt_next_put = True
    with pytest.raises(ChecksumMismatch, match="checksum mismatch"):
        register_dataset(cfg, ledger, uids[0], IrodsStore(s))
    st = ledger.stage_states(uids[0])["irods"]
    assert st.state == "failed" and "checksum mismatch" in (st.error or "")
    assert uids[0] in pending_datasets(ledger)
    # The wrong copy never appeared under the final name, and the partial upload was deleted.
    ds = ledger.require(uids[0])
    final = f"{dataset_collection(cfg, ds, 'tempZone')}/{os.path.basename(ds.raw_path)}"
    assert final not in s.objs and final + PARTIAL_SUFFIX not in s.objs
    assert s.calls_of("data_objects", "put") == [final + PARTIAL_SUFFIX]
    # The next run overwrites the bad object and succeeds.
    reg = register_dataset(cfg, ledger, uids[0], IrodsStore(s))
    assert irods_to_sha256(s.objs[reg.data_object].checksum) == ledger.require(uids[0]).sha256


def test_no_permission_is_a_clear_error_in_the_ledger(ready):
    cfg, ledger, uids = ready
    s = session(writable_homes=False)
    with pytest.raises(IrodsError, match="CAT_NO_ACCESS_PERMISSION"):
        register_dataset(cfg, ledger, uids[0], IrodsStore(s))
    assert "cannot create collection" in ledger.stage_states(uids[0])["irods"].error


def test_a_dataset_not_past_qc_is_refused(facility_config, ledger):
    uid = ingest_synthetic(facility_config, ledger, n=1)[0]
    with pytest.raises(IrodsError, match="past QC"):
        register_dataset(facility_config, ledger, uid, IrodsStore(session()))


IRODS_PASSWORD = "iRODS-unit-password-5b7e"


class PasswordSession(RecordingSession):
    """The stand-in holding its password where python-irodsclient keeps it (``session.pool.account``)."""

    def __init__(self, password: str, **kw) -> None:
        super().__init__(**kw)
        self.pool = SimpleNamespace(account=SimpleNamespace(
            client_user=self.username, client_zone=self.zone, password=password))


def leaked(secret: str, caplog, cfg) -> list[str]:
    """Where ``secret`` shows: the log records, the ledger's database files (with its journal)."""
    where = ["log"] if secret in caplog.text or any(secret in str(r.args) for r in caplog.records) else []
    db = Path(make_url(cfg.ledger.url).database)
    if any(secret.encode() in f.read_bytes() for f in db.parent.glob(db.name + "*")):
        where.append("ledger")
    return where


@pytest.mark.parametrize("leak", [None, "log", "ledger"])
def test_registration_logs_never_carry_the_password(ready, caplog, monkeypatch, leak):
    """The session carries a password; it reaches neither the logs nor the ledger.

    ``leak`` is the negative control: a careless debug line, or a record holding the account, must be
    caught by the same check, so the check is shown to be able to fail.
    """
    cfg, ledger, uids = ready
    s = PasswordSession(IRODS_PASSWORD, groups=("microfair", "demo"))
    if leak == "log":
        put = IrodsStore.put

        def careless_put(self, *args, **kw):
            logging.getLogger("microfair.irods.store").debug("put with account %s", vars(self.session.pool.account))
            return put(self, *args, **kw)

        monkeypatch.setattr(IrodsStore, "put", careless_put)
    elif leak == "ledger":
        put_record = type(ledger).put_record

        def careless_record(self, uid, kind, body):
            return put_record(self, uid, kind, {**body, "account": vars(s.pool.account)})

        monkeypatch.setattr(type(ledger), "put_record", careless_record)
    with caplog.at_level(logging.DEBUG):
        register_dataset(cfg, ledger, uids[0], IrodsStore(s))
    assert uids[0] in caplog.text and "rods" in caplog.text
    assert ledger.stage_states(uids[0])["irods"].state == "succeeded"
    assert leaked(IRODS_PASSWORD, caplog, cfg) == ([leak] if leak else [])


def test_put_goes_through_a_partial_name_and_replaces_a_wrong_copy(ready):
    cfg, ledger, uids = ready
    s = session()
    reg = register_dataset(cfg, ledger, uids[0], IrodsStore(s))
    final = reg.data_object
    assert s.calls_of("data_objects", "put")[0] == final + PARTIAL_SUFFIX
    assert f"{final}{PARTIAL_SUFFIX} -> {final}" in s.calls_of("data_objects", "move")
    # Someone overwrote the object in iRODS: the next run replaces it, keeping nothing aside.
    s.objs[final].data, s.objs[final].checksum = b"tampered", "sha2:" + base64.b64encode(
        hashlib.sha256(b"tampered").digest()).decode()
    s.calls.clear()
    again = register_dataset(cfg, ledger, uids[0], IrodsStore(s))
    assert again.transferred == [final]
    assert s.calls_of("data_objects", "move") == [f"{final} -> {final}{OLD_SUFFIX}",
                                                  f"{final}{PARTIAL_SUFFIX} -> {final}"]
    assert s.objs[final].data == open(ledger.require(uids[0]).raw_path, "rb").read()
    assert not [p for p in s.objs if p.endswith((PARTIAL_SUFFIX, OLD_SUFFIX))]
    assert {(m.name, m.value) for m in s.objs[final].avus} >= {("microfair.uid", uids[0])}


def test_a_partial_object_left_by_a_crash_is_uploaded_again(ready, tmp_path):
    cfg, ledger, uids = ready
    s = session()
    ds = ledger.require(uids[0])
    final = f"{dataset_collection(cfg, ds, 'tempZone')}/{os.path.basename(ds.raw_path)}"
    half = tmp_path / "half"
    half.write_bytes(open(ds.raw_path, "rb").read()[:100])
    store = IrodsStore(s)
    store.ensure_collection(dataset_collection(cfg, ds, "tempZone"))
    store.put(str(half), final + PARTIAL_SUFFIX)  # what a killed worker leaves behind
    reg = register_dataset(cfg, ledger, uids[0], store)
    assert reg.transferred[0] == final and final + PARTIAL_SUFFIX not in s.objs
    assert irods_to_sha256(s.objs[final].checksum) == ds.sha256


def test_register_mode_unregisters_a_file_that_changed_since_ingest(ready):
    cfg, ledger, uids = ready
    cfg.irods.mode = "register"
    ledger.update(uids[0], sha256="0" * 64)  # the ledger's checksum no longer matches the file
    s = session()
    with pytest.raises(ChecksumMismatch):
        register_dataset(cfg, ledger, uids[0], IrodsStore(s))
    ds = ledger.require(uids[0])
    final = f"{dataset_collection(cfg, ds, 'tempZone')}/{os.path.basename(ds.raw_path)}"
    assert s.calls_of("data_objects", "register") == s.calls_of("data_objects", "unregister") == [final]
    assert final not in s.objs
    assert os.path.exists(ds.raw_path)  # the file itself is untouched
    assert "checksum mismatch" in ledger.stage_states(uids[0])["irods"].error


def test_a_group_write_permission_on_raw_data_is_taken_back(ready):
    cfg, ledger, uids = ready
    s = session()
    reg = register_dataset(cfg, ledger, uids[0], IrodsStore(s))
    s.objs[reg.data_object].acl["demo"] = "modify_object"  # granted by hand meanwhile
    register_dataset(cfg, ledger, uids[0], IrodsStore(s))
    assert s.objs[reg.data_object].acl["demo"] == "read_object"
    acl_sets = [c for c in s.calls if c[:2] == ("acls", "set")]
    assert acl_sets and all(path == reg.collection for _, _, path in acl_sets)


def test_an_owner_other_than_the_session_user_gets_own(ready):
    cfg, ledger, uids = ready
    cfg.irods.owner = "steward"
    s = RecordingSession(groups=("microfair", "demo", "steward"))
    reg = register_dataset(cfg, ledger, uids[0], IrodsStore(s))
    assert s.objs[reg.data_object].acl == {"rods": "own", "steward": "own", "demo": "read_object"}
    assert ledger.get_record(uids[0], "irods")["owner"] == "steward"


def test_an_unknown_group_is_a_clear_failure(ready):
    cfg, ledger, uids = ready
    s = RecordingSession(groups=("microfair", "demo"))
    s.users.discard("demo")  # the project's group does not exist in this zone
    with pytest.raises(IrodsError, match="cannot give demo read.*CAT_INVALID_USER"):
        register_dataset(cfg, ledger, uids[0], IrodsStore(s))
    assert "CAT_INVALID_USER" in ledger.stage_states(uids[0])["irods"].error


def test_avus_set_by_people_are_left_alone(ready):
    cfg, ledger, uids = ready
    s = session()
    reg = register_dataset(cfg, ledger, uids[0], IrodsStore(s))
    from irods.meta import iRODSMeta

    s.objs[reg.data_object].avus.append(iRODSMeta("lab.note", "keep me", None))
    s.objs[reg.data_object].avus.append(iRODSMeta("microfair.stale", "from an older version", None))
    again = register_dataset(cfg, ledger, uids[0], IrodsStore(s))
    names = [m.name for m in s.objs[reg.data_object].avus]
    assert "lab.note" in names and "microfair.stale" not in names
    assert (again.avus_added, again.avus_removed) == (0, 1)
    assert len(names) == len({(m.name, m.value, m.units) for m in s.objs[reg.data_object].avus})


def test_genquery_finds_the_raw_object_and_the_zarr_collection_by_uid(ready):
    cfg, ledger, uids = ready
    s = session()
    regs = [register_dataset(cfg, ledger, uid, IrodsStore(s)) for uid in uids]
    for reg in regs:
        assert find_dataset(IrodsStore(s), reg.uid) == sorted([reg.data_object, reg.zarr_collection])
    assert find_dataset(IrodsStore(s), "no-such-uid") == []
    rec = ledger.get_record(uids[0], "irods")
    assert rec["collection"] == regs[0].collection
    assert rec["objects"] == rec["checksums_verified"] == 1 + sum(
        1 for p in s.objs if p.startswith(regs[0].zarr_collection + "/"))


def test_the_standin_keeps_the_server_behaviour_the_live_suite_checks(tmp_path):
    from microfair.standins.irods import check_server_behaviour

    check_server_behaviour(session(), "/tempZone/home/microfair/contract", tmp_path, "demo")


def test_avu_values_follow_the_irods_limits():
    from microfair.irods import flatten
    from microfair.irods.avu import MAX_VALUE_BYTES, TRUNCATED

    avus = flatten("ns.rembi", {"study": {"title": "é" * 3000, "empty": " ", "none": None,
                                          "authors": [{"name": "A"}, {"name": "B"}], "keywords": ["x", "y"]}})
    by = {(a.attribute, a.unit): a.value for a in avus}
    title = by[("ns.rembi.study.title", "")]
    assert len(title.encode()) <= MAX_VALUE_BYTES and title.endswith(TRUNCATED)
    assert ("ns.rembi.study.empty", "") not in by and ("ns.rembi.study.none", "") not in by
    assert by[("ns.rembi.study.authors.name", "#0")] == "A" and by[("ns.rembi.study.authors.name", "#1")] == "B"
    assert sorted(a.value for a in avus if a.attribute == "ns.rembi.study.keywords") == ["x", "y"]


def test_no_write_permission_on_an_existing_object_fails_the_metadata_update(ready):
    cfg, ledger, uids = ready
    s = session()
    reg = register_dataset(cfg, ledger, uids[0], IrodsStore(s))
    s.objs[reg.data_object].acl = {"rods": "read_object"}  # an iRODS admin took our rights away
    rec = ledger.get_record(uids[0], "dublin_core")
    rec["title"] = "A title that must now be written as an AVU"
    ledger.put_record(uids[0], "dublin_core", rec)
    with pytest.raises(IrodsError, match="cannot write metadata on .*CAT_NO_ACCESS_PERMISSION"):
        register_dataset(cfg, ledger, uids[0], IrodsStore(s))
    assert [m.value for m in s.objs[reg.data_object].avus if m.name == "microfair.dc.title"] != [rec["title"]]
    st = ledger.stage_states(uids[0])["irods"]
    assert st.state == "failed" and "CAT_NO_ACCESS_PERMISSION" in st.error
