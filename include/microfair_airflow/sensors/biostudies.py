"""BiostudiesSubmissionSensor: wait (reschedule mode) until a submission is POST_PROCESSED.

INVALID fails the task at once, with the server's errors in the task log and in the ledger.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator


class BiostudiesSubmissionSensor(BaseSensorOperator):
    """:param submission: ``{"accno", "version"}`` of the request (templated, usually the submit task's XCom).
    :param study_file: the study metadata file (to find the datasets of the deposit).
    :param project: / :param study: the dataset selection of the deposit.
    :param biostudies_conn_id: the BioStudies connection; default: ``biostudies.connection_id``.
    """

    template_fields = ("submission", "study_file", "project", "study")

    def __init__(self, *, submission: Any, study_file: str, project: str | None = None, study: str | None = None,
                 biostudies_conn_id: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("mode", "reschedule")
        kwargs.setdefault("poke_interval", 30)
        kwargs.setdefault("timeout", timedelta(hours=24).total_seconds())
        super().__init__(**kwargs)
        self.submission = submission
        self.study_file = study_file
        self.project = project
        self.study = study
        self.biostudies_conn_id = biostudies_conn_id

    def poke(self, context: Any) -> bool:
        import json

        from airflow.sdk.exceptions import AirflowFailException

        from microfair.deposit import DepositSelection
        from microfair.deposit.biostudies import FINAL_BAD, FINAL_OK
        from microfair.deposit.run import build, record_rejection
        from microfair_airflow.common import facility, run_context
        from microfair_airflow.hooks.biostudies import BiostudiesHook

        sub = json.loads(self.submission) if isinstance(self.submission, str) else self.submission
        accno, version = sub["accno"], int(sub["version"])
        cfg, ledger = facility()
        client = BiostudiesHook(self.biostudies_conn_id or cfg.biostudies.connection_id).get_conn(cfg)
        state = client.status(accno, version)
        self.log.info("%s version %d: %s", accno, version, state)
        if state == FINAL_OK:
            return True
        if state == FINAL_BAD:
            errors = client.errors(accno, version)
            plan, _ = build(cfg, ledger, self.study_file, DepositSelection(self.project or None, self.study or None))
            record_rejection(ledger, plan, accno, version, errors, run_context(context))
            raise AirflowFailException(f"BioStudies rejected {accno} version {version}:\n"
                                       + "\n".join(f"  - {e}" for e in errors))
        return False
