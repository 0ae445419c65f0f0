"""microfair_retention: free acquisition-PC landing zones, only for data verified 3-2-1.

free_landing_zones: a landing-zone file older than ``retention.days`` (default 60) is deleted
only when its dataset is 3-2-1 compliant now and the file still matches the ledger checksum.
Dry-run by default (the log lists what would be freed and when); real deletion needs
``retention.dry_run: false`` in the facility file. Every deletion goes to the ledger audit log.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag

from microfair_airflow.operators.backup import RetentionOperator, facility_setting


@dag(
    dag_id="microfair_retention",
    schedule=facility_setting("retention", "schedule", default="30 3 * * *"),
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    # No retries: a refused deletion is an answer, not a transient error; the next run re-checks.
    default_args={"owner": "microfair", "retries": 0},
    tags=["microfair", "backup", "retention"],
    doc_md=__doc__,
)
def microfair_retention():
    RetentionOperator(task_id="free_landing_zones")


microfair_retention()
