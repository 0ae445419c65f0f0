"""The Publish view's list of waiting drafts comes from one query over the ``publications`` records,
not one call per dataset: counted with a SQLAlchemy event listener on a ledger of a few thousand datasets."""

from __future__ import annotations

import contextlib

import pytest
from sqlalchemy import event

from microfair.deposit.targets.base import Publication
from microfair.deposit.targets.run import RECORD, record_publication, waiting_drafts
from microfair.ledger import Dataset, Record
from tests.support.dashboard import dashboard_client

N = 3000


@contextlib.contextmanager
def counting(ledger):
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        statements.append(statement)

    event.listen(ledger.engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(ledger.engine, "before_cursor_execute", count)


@pytest.fixture
def seeded(ledger):
    """N datasets, each with a record of another kind and most with a published Zenodo record; 2 drafts."""
    with ledger.session() as s:
        s.add_all(Dataset(uid=f"u{i:05d}", microscope="scope", source_path=f"/l/{i}.czi", name=f"{i}.czi",
                          state="qc_done", project="DEMO") for i in range(N))
    with ledger.session() as s:
        ids = dict(s.execute(Dataset.__table__.select().with_only_columns(Dataset.uid, Dataset.id)).all())
        s.add_all(Record(dataset_id=ids[f"u{i:05d}"], kind="qc", body={"ok": True}) for i in range(N))
        s.add_all(Record(dataset_id=ids[f"u{i:05d}"], kind=RECORD,
                         body={"zenodo": {"state": "published", "id": str(i)}}) for i in range(10, N))
    draft = Publication("dataverse", "draft", "77", "doi:10.5072/FK2/D77", "https://dv/77", metadata_sha256="x")
    record_publication(ledger, ["u00001", "u00002"], draft, {"study_file": "/srv/s.yaml", "project": "DEMO"})
    record_publication(ledger, ["u00005"], Publication("zenodo", "draft", "9", None, None), {})
    return ledger


def test_waiting_drafts_is_one_query_whatever_the_number_of_datasets(seeded):
    with counting(seeded) as statements:
        drafts = waiting_drafts(seeded)
    assert [(d.target, d.id, d.datasets, d.complete) for d in drafts] == [
        ("dataverse", "77", ["u00001", "u00002"], True), ("zenodo", "9", ["u00005"], False)]
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1, statements


def test_the_publish_page_issues_a_constant_number_of_queries(seeded, facility_config, monkeypatch):
    pytest.importorskip("fastapi.testclient")
    with dashboard_client(facility_config, seeded, monkeypatch) as client:
        client.get("/publish")  # warm up (login, caches)
        with counting(seeded) as statements:
            html = client.get("/publish").text
    assert "doi:10.5072/FK2/D77" in html
    assert len(statements) <= 5, statements  # not one per dataset (N = 3000)
