"""The dataset page's "Lab notebook" section: the link, and each post-back with its state and reason."""

from __future__ import annotations

import re

import pytest

from microfair.eln import ELN_RECORD, eln_record, resolve_link
from tests.support.dashboard import dashboard_client

pytest.importorskip("fastapi.testclient")


@pytest.fixture
def client(facility_config, ledger, monkeypatch):
    with dashboard_client(facility_config, ledger, monkeypatch) as c:
        yield c


def _section(html: str) -> str:
    m = re.search(r'<section data-testid="eln">(.*?)</section>', html, re.S)
    assert m, "no Lab notebook section"
    return m.group(1)


def _dataset(ledger, uid: str) -> None:
    ledger.upsert_dataset(uid, name=f"{uid}.czi", microscope="demo-scope", source_path=f"/landing/{uid}.czi",
                          state="qc_done", project="DEMO")


def test_pending_and_posted_post_backs_are_shown_with_their_reason(client, ledger):
    _dataset(ledger, "u-eln")
    rec = eln_record(resolve_link("https://eln.example.org/experiments.php?mode=view&id=42"))
    rec["posts"] = {"ingested": {"state": "posted", "attempts": 1, "comment_id": 7, "at": "2026-12-01T10:00:00+00:00"},
                    "deposited": {"state": "pending", "attempts": 3, "error": "eLabFTW refused the API key (401: x)",
                                  "at": "2026-12-01T11:00:00+00:00"}}
    ledger.put_record("u-eln", ELN_RECORD, rec)
    html = client.get("/datasets/u-eln").text
    sec = _section(html)
    assert 'href="https://eln.example.org/experiments.php?mode=view&amp;id=42"' in sec
    rows = dict(re.findall(r'<tr data-event="(\w+)">(.*?)</tr>', sec, re.S))
    assert "posted" in rows["ingested"] and "comment 7" in rows["ingested"]
    assert "pending" in rows["deposited"] and "401" in rows["deposited"] and "next ingest run" in rows["deposited"]
    assert 'data-kind="eln"' not in html  # not repeated under "Other records"


def test_a_link_that_is_not_elabftw_is_shown_as_a_link_only(client, ledger):
    _dataset(ledger, "u-lg")
    ledger.put_record("u-lg", ELN_RECORD, eln_record(resolve_link("https://my.labguru.com/knowledge/experiments/1")))
    sec = _section(client.get("/datasets/u-lg").text)
    assert "labguru" in sec and "A link only" in sec and "eln-posts" not in sec


def test_no_section_without_a_link(client, ledger):
    _dataset(ledger, "u-none")
    assert 'data-testid="eln"' not in client.get("/datasets/u-none").text
