"""The same registration against a real iRODS server, when one is configured.

    docker compose --profile irods-test up -d irods-catalog-provider
    MICROFAIR_IRODS_TEST_ENV=deploy/irods-test-env.json MICROFAIR_IRODS_TEST_PASSWORD=rods \\
        .venv/bin/python -m pytest tests/integration/test_irods_live.py

Skipped when MICROFAIR_IRODS_TEST_ENV is not set. The user must be a rodsadmin (``rods`` in the
test zone): the suite creates a throw-away group, writes under ``/<zone>/home/<that group>`` and
removes both at the end.
"""

from __future__ import annotations

import os
import uuid

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.irods_live]

ENV = os.environ.get("MICROFAIR_IRODS_TEST_ENV")
if not ENV:
    pytest.skip("no iRODS server: set MICROFAIR_IRODS_TEST_ENV to an irods_environment.json",
                allow_module_level=True)

from irods.access import iRODSAccess  # noqa: E402
from irods.session import iRODSSession  # noqa: E402

from microfair.ingest import convert_dataset, qc_dataset  # noqa: E402
from microfair.irods import (  # noqa: E402
    IrodsError,
    IrodsStore,
    find_dataset,
    irods_to_sha256,
    pending_datasets,
    register_dataset,
)
from tests.support.synthetic_ingest import ingest_synthetic  # noqa: E402
from microfair.standins.irods import check_server_behaviour  # noqa: E402


@pytest.fixture
def live_session():
    password = os.environ.get("MICROFAIR_IRODS_TEST_PASSWORD")
    kwargs = {"password": password} if password else {}
    with iRODSSession(irods_env_file=ENV, **kwargs) as s:
        yield s


@pytest.fixture
def group_home(live_session):
    """A fresh group and its home collection, owned by the session user; removed afterwards."""
    s = live_session
    group = "microfair_test_" + uuid.uuid4().hex[:8]
    s.groups.create(group)
    home = f"/{s.zone}/home/{group}"
    if not s.collections.exists(home):
        s.collections.create(home, recurse=True)
    s.acls.set(iRODSAccess("own", home, s.username, s.zone), admin=True)
    try:
        yield group, home
    finally:
        if s.collections.exists(home):
            s.collections.remove(home, recurse=True, force=True)
        s.groups.remove(group)


def test_the_server_behaves_as_the_standin_claims(live_session, group_home, tmp_path):
    group, home = group_home
    check_server_behaviour(live_session, f"{home}/contract", tmp_path, group)


def test_register_verify_rerun_and_find_on_a_real_server(facility_config, ledger, live_session, group_home,
                                                         tmp_path):
    s = live_session
    group, home = group_home
    facility_config.irods.home_group = group
    facility_config.projects.clear()  # the project's own group would take precedence
    facility_config.irods.avu_prefix = "microfair_test_" + uuid.uuid4().hex[:6]
    uids = ingest_synthetic(facility_config, ledger, n=1)
    convert_dataset(facility_config, ledger, uids[0])
    qc_dataset(facility_config, ledger, uids[0])
    store = IrodsStore(s)

    reg = register_dataset(facility_config, ledger, uids[0], store)
    ds = ledger.require(uids[0])
    assert reg.collection.startswith(home + "/")
    assert irods_to_sha256(store.checksum(reg.data_object)) == ds.sha256
    assert not store.exists(reg.data_object + ".microfair-partial")
    assert reg.data_object in find_dataset(store, uids[0], facility_config.irods.avu_prefix)
    levels = {a.user: a.level for a in store.access(reg.data_object)}
    assert levels[s.username] == "own" and levels[group] in ("read_object", "read object")
    avus = store.avus(reg.data_object)
    assert len(avus) == len(set(avus)) and any(a.attribute.endswith(".checksum.sha256") for a in avus)
    assert pending_datasets(ledger) == []

    again = register_dataset(facility_config, ledger, uids[0], store)
    assert again.transferred == [] and (again.avus_added, again.avus_removed) == (0, 0)
    assert store.avus(reg.data_object) == avus

    # A wrong copy in iRODS is replaced, then verified.
    bad = tmp_path / "not-the-raw-file.bin"
    bad.write_bytes(b"not the raw file")
    store.put(str(bad), reg.data_object, force=True)
    fixed = register_dataset(facility_config, ledger, uids[0], store)
    assert fixed.transferred == [reg.data_object]
    assert irods_to_sha256(store.checksum(reg.data_object)) == ds.sha256

    # Register mode refuses to register over an object with another checksum.
    facility_config.irods.mode = "register"
    store.put(__file__, reg.data_object, force=True)
    with pytest.raises(IrodsError, match="another checksum"):
        register_dataset(facility_config, ledger, uids[0], store)
