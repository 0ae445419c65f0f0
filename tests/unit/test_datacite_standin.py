"""The DataCite stand-in follows the REST API's DOI states (review Rv): no ``event`` gives a draft,
``register`` a registered DOI, ``publish`` a findable one, on POST and on PUT alike; ``hide`` takes a
findable DOI back to registered."""

from __future__ import annotations

import requests

from microfair.standins.datacite import DataciteStandin

REPO, PW = "EBI.TEST", "pw-for-tests"
FULL = {"titles": [{"title": "t"}], "creators": [{"name": "n"}], "publisher": "p", "publicationYear": 2026,
        "url": "https://example.org/x"}


def _send(dc: DataciteStandin, method: str, path: str, attrs: dict) -> dict:
    r = requests.request(method, f"{dc.url}{path}", auth=(REPO, PW), timeout=10,
                         json={"data": {"type": "dois", "attributes": attrs}})
    assert r.status_code in (200, 201), r.text
    return r.json()["data"]["attributes"]


def test_events_move_a_doi_through_draft_registered_findable():
    with DataciteStandin(REPO, PW, prefix="10.80000") as dc:
        assert _send(dc, "POST", "/dois", {"prefix": "10.80000", **FULL})["state"] == "draft"
        doi = _send(dc, "POST", "/dois", {"doi": "10.80000/reg", "event": "register", **FULL})["doi"]
        assert dc.dois[doi]["state"] == "registered"
        assert _send(dc, "PUT", f"/dois/{doi}", {"event": "publish"})["state"] == "findable"
        assert _send(dc, "PUT", f"/dois/{doi}", {"event": "hide"})["state"] == "registered"
        assert _send(dc, "PUT", f"/dois/{doi}", {"titles": [{"title": "new"}]})["state"] == "registered"
        assert dc.dois[doi]["titles"] == [{"title": "new"}]
