"""microfair_ingest_batched: microfair_ingest for landing zones full of small files (proposal for review).

discover ─▶ ingest_batch[i]: collect ─▶ validate ─▶ convert ─▶ qc ─▶ verdict ─▶ report (emits INGESTED)
                                                                              └─▶ all_batches_passed
landing_zones_mounted (fails the run while a landing zone is missing or unmounted)

Same stages and domain functions as microfair_ingest, but small acquisitions (below
``MICROFAIR_BATCH_MAX_MB``, default 64 MB) are grouped ``MICROFAIR_BATCH_SIZE`` (default 50) to one mapped
task-group instance; a large acquisition still gets its own. Inside a batch each acquisition is processed on
its own: a bad file is quarantined with its reason in the ledger and the others go on; ``verdict`` then fails
the batch's instance, naming the datasets that need attention, so the Airflow UI still shows red.
``report`` counts, from the ledger, every dataset of every batch that reached QC (those of a failed batch
too) and emits INGESTED; ``all_batches_passed`` (a leaf downstream of every verdict) is then
``upstream_failed`` when any verdict failed, so the run itself is failed (red), not green.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import dag, task, task_group

from microfair_airflow.common import task_defaults

from microfair_airflow.assets import INGESTED

default_args = task_defaults(retries=3, retry_delay=timedelta(seconds=30), max_retry_delay=timedelta(minutes=30))


def _max_map_length() -> int:
    """Airflow's ``[core] max_map_length`` (how many mapped instances one task may have)."""
    from airflow.sdk import conf

    return conf.getint("core", "max_map_length", fallback=1024)


def _each(uids: list[str], stage, want: str, **context) -> list[str]:
    """:func:`microfair_airflow.common.each_dataset` (one dataset's failure never stops its batch)."""
    from microfair_airflow.common import each_dataset

    return each_dataset(uids, stage, want, context)


@dag(
    dag_id="microfair_ingest_batched",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    tags=["microfair", "ingest"],
    doc_md=__doc__,
)
def microfair_ingest_batched():
    @task
    def discover() -> list[list[dict]]:
        """Scan every landing zone; group the completely written acquisitions into batches."""
        from microfair.collect import scan
        from microfair_airflow.common import facility

        cfg, ledger = facility()
        ledger.sweep_interrupted()  # stages left running by a killed process: interrupted, not running
        result = scan(cfg, ledger)
        size = int(os.environ.get("MICROFAIR_BATCH_SIZE", "50"))
        small = int(float(os.environ.get("MICROFAIR_BATCH_MAX_MB", "64")) * 1e6)
        big = [[a.to_dict()] for a in result.ready if a.size > small]
        little = [a.to_dict() for a in result.ready if a.size <= small]
        batches = big + [little[i:i + size] for i in range(0, len(little), size)]
        print(f"{len(result.ready)} acquisition(s) in {len(batches)} batch(es); {len(result.waiting)} waiting")
        limit = _max_map_length()
        if len(batches) > limit:  # a longer list would fail the run's mapping; the rest waits for the next run
            later = sum(len(b) for b in batches[limit:])
            print(f"[core] max_map_length is {limit}: {later} acquisition(s) left for the next run")
            batches = batches[:limit]
        return batches

    @task_group
    def ingest_batch(batch: list[dict]):
        @task
        def collect(batch: list[dict], **context) -> list[str]:
            """Checksummed, resumable copies into the read-only raw tree."""
            from microfair.collect import Acquisition, DestinationFull, NotReady, collect as collect_one

            def one(cfg, ledger, acq, ctx):
                try:
                    return collect_one(cfg, ledger, Acquisition(**acq), ctx)
                except NotReady:
                    return "not_ready"
                except DestinationFull:
                    raise  # the whole batch retries; collect resumes partial copies
            uids = [a["uid"] for a in batch]
            by_uid = {a["uid"]: a for a in batch}
            return _each(uids, lambda cfg, ledger, uid, ctx: one(cfg, ledger, by_uid[uid], ctx), "collected",
                         **context)

        @task
        def validate(uids: list[str], **context) -> list[str]:
            from microfair import ingest

            return _each(uids, ingest.validate_dataset, "validated", **context)

        @task
        def convert(uids: list[str], **context) -> list[str]:
            """One dask client for the whole batch (the dask_default connection, else a local cluster)."""
            from microfair import ingest
            from microfair_airflow.common import facility
            from microfair_airflow.hooks.dask import DaskHook

            cfg, _ = facility()
            hook = DaskHook(dask_conn_id=cfg.dask.connection_id, settings=cfg.conversion, dask_settings=cfg.dask)
            with hook.client() as client:
                return _each(uids, lambda c, lg, uid, ctx: ingest.convert_dataset(c, lg, uid, ctx, client=client),
                             "converted", **context)

        @task
        def qc(uids: list[str], **context) -> list[str]:
            from microfair import ingest

            return _each(uids, ingest.qc_dataset, "qc_done", **context)

        @task(trigger_rule="all_done")  # AirflowFailException: never retried
        def verdict(batch: list[dict]) -> list[str]:
            """Fail this batch's instance when any of its datasets needs attention (all are in the ledger)."""
            from airflow.sdk.exceptions import AirflowFailException

            from microfair_airflow.common import facility

            _, ledger = facility()
            datasets = [ledger.get(a["uid"]) for a in batch]
            bad = [f"{d.uid} ({d.name}): {d.state} {d.reason or ''}".strip() for d in datasets
                   if d is not None and d.state not in ("qc_done",)]
            if bad:
                raise AirflowFailException(f"{len(bad)} of {len(batch)} dataset(s) need attention:\n"
                                           + "\n".join(bad))
            return [d.uid for d in datasets if d is not None]

        done = qc(convert(validate(collect(batch))))
        checked = verdict(batch)
        done >> checked
        return checked

    @task(trigger_rule="all_done", outlets=[INGESTED], retries=0)
    def report(batches: list[list[dict]] | None) -> dict:
        """Log the ledger summary a facility manager reads after each run.

        The datasets that reached QC are read from the ledger for every batch of the run: a batch whose
        verdict failed has no XCom, but its good datasets were ingested all the same.
        """
        from microfair_airflow.common import facility, report_ingest

        _, ledger = facility()
        uids = [a["uid"] for b in (batches or []) for a in b]
        done = [u for u in uids if (d := ledger.get(u)) is not None and d.state == "qc_done"]
        return report_ingest(done)

    @task  # default trigger rule: upstream_failed (so the run is failed) when any verdict failed
    def all_batches_passed(verdicts: list[list[str]]) -> int:
        """Every batch's verdict passed; the run is green only then."""
        n = sum(len(v or []) for v in verdicts)
        print(f"every batch passed its verdict: {n} dataset(s) reached QC")
        return n

    @task(retries=0)
    def landing_zones_mounted() -> int:
        """Every landing zone is there: a missing or unmounted one fails the run (the others are still ingested)."""
        from microfair_airflow.common import require_landing_zones

        return require_landing_zones()

    batches = discover()
    landing_zones_mounted()
    verdicts = ingest_batch.expand(batch=batches)
    verdicts >> report(batches)
    all_batches_passed(verdicts)


microfair_ingest_batched()
