"""microfair_ingest: landing zones → raw tree → metadata → OME-Zarr → QC, one mapped group per acquisition.

discover ─▶ ingest_acquisition[i]: collect ─▶ validate ─▶ convert ─▶ qc ─▶ report (emits INGESTED)
                                                                  └─▶ all_acquisitions_passed
landing_zones_mounted (fails the run while a landing zone is missing or unmounted)

Each acquisition runs in its own mapped task-group instance, so one bad file fails
only its own tasks; the reason is in the task log and in the ledger. ``report`` always runs
and emits INGESTED for the good ones; ``all_acquisitions_passed`` (a leaf) is then
``upstream_failed`` when any acquisition failed, so the run itself is failed (red), as in
microfair_ingest_batched. A file that is not ready yet is skipped, not failed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import dag, task, task_group

from microfair_airflow.assets import INGESTED
from microfair_airflow.common import ingest_schedule, task_defaults
from microfair_airflow.operators.ingest import DatasetStageOperator

default_args = task_defaults(retries=3, retry_delay=timedelta(seconds=30), max_retry_delay=timedelta(minutes=30))


@dag(
    dag_id="microfair_ingest",
    schedule=ingest_schedule(),
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    tags=["microfair", "ingest"],
    doc_md=__doc__,
)
def microfair_ingest():
    @task
    def discover() -> list[dict]:
        """Scan every landing zone; return the acquisitions that are completely written."""
        from microfair.collect import scan
        from microfair_airflow.common import facility

        from airflow.sdk import conf

        cfg, ledger = facility()
        ledger.sweep_interrupted()  # stages left running by a killed process: interrupted, not running
        result = scan(cfg, ledger)
        for w in result.waiting:
            print(f"waiting: {w.source} ({w.why})")
        # A run maps over at most [core] max_map_length acquisitions; the rest wait for the next run
        # (more than that many small files at once: see microfair_ingest_batched).
        limit = conf.getint("core", "max_map_length", fallback=1024)
        if len(result.ready) > limit:
            print(f"{len(result.ready)} acquisitions are ready; this run takes {limit} ([core] max_map_length), "
                  f"the other {len(result.ready) - limit} wait for the next run")
        return [a.to_dict() for a in result.ready[:limit]]

    @task_group
    def ingest_acquisition(acquisition: dict):
        @task
        def collect(acquisition: dict, **context) -> str:
            """Checksummed, resumable copy into the read-only raw tree."""
            from airflow.sdk.exceptions import AirflowSkipException

            from microfair.collect import Acquisition, NotReady, collect as collect_one
            from microfair_airflow.common import facility, run_context
            from microfair_airflow.operators.ingest import raise_for_state

            cfg, ledger = facility()
            acq = Acquisition(**acquisition)
            try:
                state = collect_one(cfg, ledger, acq, run_context(context))
            except NotReady as exc:
                raise AirflowSkipException(f"{acq.uid}: {exc}") from None
            return raise_for_state(acq.uid, state, ledger)

        @task
        def validate(uid: str, **context) -> str:
            """Naming convention, metadata through bioio, Dublin Core and REMBI records."""
            from microfair import ingest
            from microfair_airflow.common import facility, run_context
            from microfair_airflow.operators.ingest import raise_for_state

            cfg, ledger = facility()
            return raise_for_state(uid, ingest.validate_dataset(cfg, ledger, uid, run_context(context)), ledger)

        uid = validate(collect(acquisition))
        converted = DatasetStageOperator(task_id="convert", stage="convert", dataset_uid=uid)
        qc = DatasetStageOperator(task_id="qc", stage="qc", dataset_uid=converted.output)
        return qc.output

    @task(trigger_rule="all_done", outlets=[INGESTED], retries=0)
    def report(uids: list[str | None] | None) -> dict:
        """Log the ledger summary a facility manager reads after each run."""
        from microfair_airflow.common import report_ingest

        done = [u for u in (uids or []) if u]
        return report_ingest(done)

    @task  # default trigger rule: upstream_failed (so the run is failed) when any acquisition failed
    def all_acquisitions_passed(uids: list[str | None]) -> int:
        """Every acquisition of the run reached QC; the run is green only then."""
        n = len([u for u in uids if u])
        print(f"every acquisition of this run reached QC: {n}")
        return n

    @task(retries=0)
    def landing_zones_mounted() -> int:
        """Every landing zone is there: a missing or unmounted one fails the run (the others are still ingested)."""
        from microfair_airflow.common import require_landing_zones

        return require_landing_zones()

    done = ingest_acquisition.expand(acquisition=discover())
    landing_zones_mounted()
    report(done)
    all_acquisitions_passed(done)


microfair_ingest()
