"""The eLabFTW behaviour microfair relies on, checked the same way against the stand-in and a real instance.

``check_elabftw_behaviour`` raises AssertionError naming the first broken expectation. Against a real
instance it writes one comment on the given entry (use a test entry): that is the call microfair makes.
The checks are explicit ``raise``s, not ``assert`` statements, so that they hold under ``python -O``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from microfair.eln.elabftw import ElabftwClient, ElnError


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def _refused(call: Callable[[], Any], status: int) -> None:
    try:
        call()
    except ElnError as exc:
        _expect(exc.status == status, f"expected HTTP {status}, got {exc.status}: {exc}")
        return
    raise AssertionError(f"expected HTTP {status}, the call succeeded")


def check_elabftw_behaviour(url: str, key: str, entity_type: str, entry_id: int) -> list[str]:
    """Returns the checks that passed (for the test report)."""
    done = []
    client = ElabftwClient(url, key)
    info = client.info()
    _expect(bool(info.get("elabftw_version")), f"/api/v2/info has no elabftw_version: {sorted(info)}")
    done.append(f"info: eLabFTW {info['elabftw_version']}")
    entry = client.entry(entity_type, entry_id)
    _expect(int(entry.get("id", -1)) == entry_id, f"{entity_type}/{entry_id} answered another entry: {entry.get('id')}")
    done.append("entry readable")
    wrong = ElabftwClient(url, "0-" + uuid.uuid4().hex)
    _refused(lambda: wrong.entry(entity_type, entry_id), 401)
    done.append("unknown key refused with 401")
    _refused(lambda: client.entry(entity_type, 2_000_000_000), 404)
    done.append("unknown entry is 404")
    tag = f"[microfair:contract:{uuid.uuid4().hex[:12]}]"
    comment_id = client.add_comment(entity_type, entry_id, f"microfair behaviour check {tag}")
    _expect(comment_id is not None, "POST comments gave no Location with the new comment's id")
    listed = [c for c in client.comments(entity_type, entry_id) if tag in str(c.get("comment", ""))]
    _expect([int(c["id"]) for c in listed] == [comment_id], f"the new comment is listed as {listed}")
    done.append("comment posted and listed once")
    try:
        client.add_comment(entity_type, entry_id, "   ")
    except ElnError as exc:
        _expect(exc.status == 400 and not exc.retryable, f"an empty comment: {exc}")
        done.append("empty comment refused with 400")
    else:
        raise AssertionError("an empty comment was accepted")
    return done
