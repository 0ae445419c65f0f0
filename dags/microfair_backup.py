"""microfair_backup: 3-2-1 copies of the facility storage with restic, verified, then the 3-2-1 verdicts.

targets ─▶ backup_target[target] (one mapped task per target, in parallel) ─▶ evaluate (emits BACKED_UP)

Runs when microfair_ingest reports new data (asset INGESTED) and every day (``backup.schedule``).
Each target task backs up the raw tree, the OME-Zarr and the reports, runs ``restic check``
(a rotating subset n/N, so every pack is read within the verification window), restores new
files and those read back longest ago, compares them with the ledger checksums, and traces any
damage to every dataset with content in the damaged packs. A failing target fails only its own task; the
verdicts are computed in any case, and a failed target's copies do not count.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import AssetOrTimeSchedule, Param, dag, task

from microfair_airflow.common import task_defaults

from microfair_airflow.assets import BACKED_UP, INGESTED
from microfair_airflow.operators.backup import BackupTargetOperator, facility_setting

default_args = task_defaults(retries=2, retry_delay=timedelta(minutes=5), max_retry_delay=timedelta(hours=1))


def _schedule():
    from airflow.sdk import CronTriggerTimetable

    cron = facility_setting("backup", "schedule", default="0 2 * * *")
    if not cron:
        return [INGESTED]
    return AssetOrTimeSchedule(timetable=CronTriggerTimetable(str(cron), timezone="UTC"), assets=INGESTED)


@dag(
    dag_id="microfair_backup",
    schedule=_schedule(),
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    tags=["microfair", "backup"],
    params={"full": Param(None, type=["null", "boolean"],
                          description="true: read all data and restore every dataset; empty: when due")},
    doc_md=__doc__,
)
def microfair_backup():
    @task
    def targets() -> list[str]:
        """The backup targets declared in the facility configuration."""
        from airflow.sdk.exceptions import AirflowFailException

        from microfair_airflow.common import facility

        cfg, _ = facility()
        names = [t.name for t in cfg.backup.targets]
        if not names:
            raise AirflowFailException("no backup targets in the facility configuration (backup.targets)")
        return names

    backups = BackupTargetOperator.partial(
        task_id="backup_target", full="{{ params.full }}", map_index_template="{{ task.target_name }}",
    ).expand(target_name=targets())

    @task(trigger_rule="all_done", outlets=[BACKED_UP])
    def evaluate(**context) -> dict:
        """Decide 3-2-1 for every dataset from the verified copies; record the verdicts."""
        from microfair.backup import evaluate_policy
        from microfair_airflow.common import facility, run_context

        cfg, ledger = facility()
        verdicts = evaluate_policy(cfg, ledger, ctx=run_context(context))
        bad = [v for v in verdicts if not v.compliant]
        print(f"3-2-1 holds for {len(verdicts) - len(bad)} of {len(verdicts)} dataset(s)")
        for v in bad:
            print(f"  NOT 3-2-1: {v.name} ({v.uid}): " + "; ".join(v.reasons))
        return {"datasets": len(verdicts), "compliant": len(verdicts) - len(bad)}

    backups >> evaluate()


microfair_backup()
