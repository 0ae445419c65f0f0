"""The ledger record ``eln`` of a dataset, and the post-backs to its eLabFTW entry.

The record::

    {"url": ..., "system": "elabftw", "entity_type": "experiments", "entry_id": 42, "source": "sidecar",
     "posts": {"ingested": {"state": "posted", "attempts": 1, "comment_id": 7, "error": null, "at": ...},
               "deposited": {"state": "pending", "attempts": 2, "error": "eLabFTW refused the API key (401 ...)"}}}

A post is ``pending`` until the ELN has the comment; it never fails the stage that asked for it.
Each comment ends with a marker (``[microfair:<uid>:<event>]``); before posting, the entry's comments
are read, so a post whose answer was lost is not written twice.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from microfair.eln.elabftw import ElabftwClient, ElnError
from microfair.eln.links import ElnRef

log = logging.getLogger(__name__)

ELN_RECORD = "eln"
EVENTS = ("ingested", "deposited")


def eln_record(ref: ElnRef, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """The record for a (re-)validated dataset; earlier post-backs are kept when the link is unchanged."""
    body = ref.to_dict()
    old = previous or {}
    same = all(old.get(k) == body[k] for k in ("system", "entity_type", "entry_id", "url"))
    body["posts"] = dict(old.get("posts") or {}) if same else {}
    return body


def marker(uid: str, event: str) -> str:
    return f"[microfair:{uid}:{event}]"


def comment_text(ledger: Any, uid: str, event: str) -> str:
    """What microfair writes on the entry: what happened, where the data is, the marker."""
    ds = ledger.require(uid)
    if event == "deposited":
        bia = ledger.get_record(uid, "bia") or {}
        where = ", ".join(x for x in (bia.get("accession"), bia.get("doi") and f"DOI {bia['doi']}") if x)
        what = f"deposited in the BioImage Archive{f' ({where})' if where else ''}"
    else:
        qc = ledger.get_record(uid, "qc") or {}
        verdict = {True: "QC passed", False: "QC flagged"}.get(qc.get("passed"), "QC pending")
        what = f"ingested by the imaging facility: raw copy {ds.raw_path} (SHA-256 {ds.sha256}), {verdict}"
    return f"microfair: dataset {uid} ({ds.name}) {what}. {marker(uid, event)}"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def post_event(ledger: Any, uid: str, event: str, client: ElabftwClient | None, *,
               why_no_client: str = "no eLabFTW connection") -> str | None:
    """Comment on the dataset's eLabFTW entry for ``event``; returns the post's state (None: nothing to post).

    Never raises for the ELN's sake: an error leaves the post ``pending`` with its reason.
    """
    rec = ledger.get_record(uid, ELN_RECORD)
    if not rec or rec.get("system") != "elabftw" or rec.get("entry_id") is None:
        return None
    posts = rec.setdefault("posts", {})
    post = posts.get(event) or {"state": "pending", "attempts": 0}
    if post.get("state") == "posted":
        return "posted"
    post["attempts"] = int(post.get("attempts") or 0) + 1
    post["at"] = _now()
    try:
        if client is None:
            raise ElnError(why_no_client)
        etype, eid = rec["entity_type"], int(rec["entry_id"])
        tag = marker(uid, event)
        existing = next((c for c in client.comments(etype, eid) if tag in str(c.get("comment", ""))), None)
        comment_id = existing.get("id") if existing else client.add_comment(etype, eid, comment_text(ledger, uid, event))
        post.update(state="posted", comment_id=comment_id, error=None)
        log.info("%s: eLabFTW %s %s: %s comment %s", uid, etype, eid, event, comment_id)
    except ElnError as exc:
        post.update(state="pending" if exc.retryable else "failed", error=str(exc))
        log.warning("%s: eLabFTW post-back %r %s: %s", uid, event, post["state"], exc)
    posts[event] = post
    ledger.put_record(uid, ELN_RECORD, rec)
    return post["state"]


def eln_links(ledger: Any, uids: list[str]) -> list[str]:
    """The notebook addresses of these datasets, each once, in order (for DataCite ``relatedIdentifiers``)."""
    urls = [(ledger.get_record(u, ELN_RECORD) or {}).get("url") for u in uids]
    return list(dict.fromkeys(u for u in urls if u))


def _due(ledger: Any, uid: str, event: str) -> bool:
    if event == "ingested":
        qc = ledger.stage_states(uid).get("qc")
        return qc is not None and qc.state in ("succeeded", "flagged")
    return bool((ledger.get_record(uid, "bia") or {}).get("accession"))


def eln_records(ledger: Any) -> list[tuple[str, dict[str, Any]]]:
    """(uid, ``eln`` record) of every dataset that has one, in dataset order.

    One query on a :class:`~microfair.ledger.Ledger`; any other object with ``datasets()`` and
    ``get_record`` (a ledger without a database) is asked dataset by dataset.
    """
    if not hasattr(ledger, "session"):
        return [(ds.uid, rec) for ds in ledger.datasets() if (rec := ledger.get_record(ds.uid, ELN_RECORD))]
    from sqlalchemy import select

    from microfair.ledger import Dataset, Record

    with ledger.session() as s:
        rows = s.execute(select(Dataset.uid, Record.body).join(Dataset, Dataset.id == Record.dataset_id)
                         .where(Record.kind == ELN_RECORD).order_by(Dataset.id)).all()
    return [(uid, body) for uid, body in rows if body]


def due_posts(ledger: Any, events: Any = EVENTS) -> list[tuple[str, str]]:
    """(uid, event) of every post-back that is due (QC done: "ingested"; an accession: "deposited") and not posted."""
    out = []
    for uid, rec in eln_records(ledger):
        if rec.get("system") != "elabftw" or rec.get("entry_id") is None:
            continue
        posts = rec.get("posts") or {}
        out += [(uid, ev) for ev in events if (posts.get(ev) or {}).get("state") not in ("posted", "failed")
                and _due(ledger, uid, ev)]
    return out


def _post_all(ledger: Any, posts: list[tuple[str, str]], client: ElabftwClient | None,
              **kw: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for uid, event in posts:
        state = post_event(ledger, uid, event, client, **kw) or "none"
        counts[state] = counts.get(state, 0) + 1
    return counts


def sweep(ledger: Any, client: ElabftwClient | None, events: Any = EVENTS, **kw: Any) -> dict[str, int]:
    """Post every due post-back (new ones and pending retries); returns how many ended in each state."""
    return _post_all(ledger, due_posts(ledger, events), client, **kw)


def pending_posts(ledger: Any) -> list[tuple[str, str]]:
    """(uid, event) of every post-back still pending."""
    return [(uid, ev) for uid, rec in eln_records(ledger) for ev, p in (rec.get("posts") or {}).items()
            if p.get("state") == "pending"]


def retry_pending(ledger: Any, client: ElabftwClient | None, **kw: Any) -> dict[str, int]:
    """Retry every pending post-back; returns how many ended in each state."""
    return _post_all(ledger, pending_posts(ledger), client, **kw)
