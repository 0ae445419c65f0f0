"""The same registration against a real iRODS server, when one is configured.

    docker compose --profile irods-test up -d irods-catalog-provider
    MICROFAIR_IRODS_TEST_ENV=deploy/irods-test-env.json MICROFAIR_IRODS_TEST_PASSWORD=rods \\
        .venv/bin/python -m pytest -m irods_live

Skipped when MICROFAIR_IRODS_TEST_ENV is not set. Everything is written under a fresh
collection in the user's home and removed at the end.
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

from irods.session import iRODSSession  # noqa: E402

from microfair.ingest import convert_dataset, qc_dataset  # noqa: E402
from microfair.irods import IrodsStore, find_dataset, irods_to_sha256, register_dataset  # noqa: E402
from tests.standins.biostudies import ingest_synthetic  # noqa: E402


@pytest.fixture
def live_session():
    password = os.environ.get("MICROFAIR_IRODS_TEST_PASSWORD")
    kwargs = {"password": password} if password else {}
    with iRODSSession(irods_env_file=ENV, **kwargs) as s:
        yield s


def test_register_verify_rerun_and_find_on_a_real_server(facility_config, ledger, live_session):
    s = live_session
    facility_config.irods.home_group = s.username  # the user's own home: no admin rights needed
    facility_config.projects.clear()
    facility_config.irods.avu_prefix = "microfair_test_" + uuid.uuid4().hex[:6]
    uids = ingest_synthetic(facility_config, ledger, n=1)
    convert_dataset(facility_config, ledger, uids[0])
    qc_dataset(facility_config, ledger, uids[0])
    store = IrodsStore(s)
    try:
        reg = register_dataset(facility_config, ledger, uids[0], store)
        ds = ledger.require(uids[0])
        assert irods_to_sha256(store.checksum(reg.data_object)) == ds.sha256
        assert reg.data_object in find_dataset(store, uids[0], facility_config.irods.avu_prefix)
        again = register_dataset(facility_config, ledger, uids[0], store)
        assert again.transferred == [] and (again.avus_added, again.avus_removed) == (0, 0)
    finally:
        base = f"/{s.zone}/home/{s.username}/{ds.project}" if (ds := ledger.require(uids[0])).project else None
        if base and s.collections.exists(base):
            s.collections.remove(base, recurse=True, force=True)
