"""microfair_irods: register ingested datasets in iRODS (verified transfer, AVUs, ACLs).

pending ─▶ register_irods[uid] ─▶ report

Its own DAG, scheduled on the Asset that ``microfair_ingest`` emits (and triggerable by hand with a
``project``), rather than a task inside the ingest DAG: iRODS is optional, may be down for
maintenance, and its transfers are long; none of that should hold or fail an ingest run. Datasets
already registered are not pending, so a run after every ingest is cheap. Without the Airflow
connection named by ``irods.connection_id`` the run is skipped, with the reason in the log.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task

from microfair_airflow.common import task_defaults

from microfair_airflow.assets import INGESTED

default_args = task_defaults(retries=3, retry_delay=timedelta(minutes=1), max_retry_delay=timedelta(minutes=30))


@dag(
    dag_id="microfair_irods",
    schedule=[INGESTED],
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    params={"project": Param("", type="string", description="only this project (empty: all)")},
    tags=["microfair", "irods", "preservation"],
    doc_md=__doc__,
)
def microfair_irods():
    @task
    def pending(params: dict | None = None) -> list[str]:
        """Datasets past QC that are not registered yet; skips the run without an iRODS connection."""
        from airflow.sdk.exceptions import AirflowSkipException

        from microfair.irods import pending_datasets
        from microfair_airflow.common import facility
        from microfair_airflow.hooks.irods import IrodsHook

        cfg, ledger = facility()
        conn_id = cfg.irods.connection_id
        if not IrodsHook.configured(conn_id):
            raise AirflowSkipException(f"iRODS is not configured: no Airflow connection {conn_id!r}; add one "
                                       "to register datasets (docs/irods.md). Nothing was registered.")
        IrodsHook(conn_id).check()  # a misconfigured connection fails here once, not once per dataset
        uids = pending_datasets(ledger, (params or {}).get("project") or None)
        print(f"{len(uids)} dataset(s) to register in iRODS")
        return uids

    @task
    def register_irods(uid: str, **context) -> dict:
        """Transfer (checksum verified), AVUs, ACLs and a GenQuery check for one dataset."""
        from microfair.irods import IrodsStore, register_dataset
        from microfair_airflow.common import facility, run_context
        from microfair_airflow.hooks.irods import IrodsHook

        cfg, ledger = facility()
        with IrodsHook(cfg.irods.connection_id).session() as session:
            reg = register_dataset(cfg, ledger, uid, IrodsStore(session, resource=cfg.irods.resource),
                                   run_context(context))
        return reg.to_dict()

    @task(trigger_rule="all_done", retries=0)
    def report(results: list[dict] | None) -> int:
        done = [r for r in (results or []) if r]
        for r in done:
            print(f"{r['uid']}: {r['data_object']} ({r['transferred']} written, {r['unchanged']} unchanged)")
        return len(done)

    report(register_irods.expand(uid=pending()))


microfair_irods()
