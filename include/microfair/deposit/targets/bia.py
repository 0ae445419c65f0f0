"""The BioImage Archive behind the same result as the other targets: its own asynchronous path, run through.

validate → upload → submit → wait → record (→ DataCite) from :mod:`microfair.deposit.run`, one after the
other (the DAG runs them as separate tasks, with a sensor for the wait); the result is the
``publications["bia"]`` entry that ``record_deposit`` writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from microfair.deposit.biostudies import BiostudiesClient, SubmissionRejected
from microfair.deposit.builder import DepositSelection
from microfair.deposit.targets.base import Publication


def deposit_bia(cfg: Any, ledger: Any, study_path: str | Path, selection: DepositSelection, client: BiostudiesClient,
                *, datacite_client: Any = None, poll_seconds: float = 30.0, ctx: Any = None) -> Publication:
    from microfair.deposit.run import (
        datacite_export,
        record_deposit,
        record_rejection,
        submit_deposit,
        upload_deposit,
        validate_deposit,
    )
    from microfair.deposit.targets.run import previous_publication

    plan = validate_deposit(cfg, ledger, study_path, selection, ctx)
    upload_deposit(cfg, ledger, plan, client, ctx)
    ref = submit_deposit(cfg, ledger, plan, client, ctx)
    try:
        client.wait(ref.accno, ref.version, poll_seconds=poll_seconds)
    except SubmissionRejected as exc:
        record_rejection(ledger, plan, ref.accno, ref.version, exc.messages, ctx)
        raise
    record_deposit(cfg, ledger, plan, ref, client, ctx)
    datacite_export(cfg, ledger, plan, datacite_client, ctx)
    pub = previous_publication(ledger, plan.uids(), "bia")
    assert pub is not None
    return pub
