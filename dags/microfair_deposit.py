"""microfair_deposit: publish a project (or one study) in the BioImage Archive (then DataCite), Dataverse or Zenodo.

choose_target ─┬▶ validate ─▶ upload ─▶ submit ─▶ wait (sensor, reschedule) ─▶ record ─▶ datacite   (bia)
               └▶ repository_validate ─▶ repository_deposit                        (dataverse, zenodo)

Triggered by hand with the study metadata file (YAML, see include/microfair/deposit/example_study.yaml)
and the selection (project, optionally one study). ``validate`` lists every missing field and uploads
nothing; ``upload`` skips files already in the BioStudies user folder (re-run it after a failure);
``submit`` refuses files changed since upload; ``record`` writes the accession (S-BIAD…) and the DOI
into the ledger; ``datacite`` writes the DataCite JSON and, when the DataCite connection exists, a
draft DOI. Credentials: the Airflow connections ``biostudies.connection_id`` / ``datacite.connection_id``.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task

from microfair_airflow.common import config_value, task_defaults
from microfair_airflow.sensors.biostudies import BiostudiesSubmissionSensor

default_args = task_defaults(retries=2, retry_delay=timedelta(minutes=5), max_retry_delay=timedelta(hours=1))


def _plan(params: dict, context: dict, step: str):
    from microfair.deposit import DepositSelection
    from microfair.deposit.run import build
    from microfair_airflow.common import facility

    cfg, ledger = facility()
    sel = DepositSelection(project=params.get("project") or None, study=params.get("study") or None)
    plan, _ = build(cfg, ledger, params["study_file"], sel)
    return cfg, ledger, plan


@dag(
    dag_id="microfair_deposit",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    tags=["microfair", "deposit", "bioimage-archive"],
    params={
        "study_file": Param("", type="string", description="study metadata file (YAML) on the facility server"),
        "project": Param("", type="string", description="deposit the validated datasets of this project"),
        "study": Param("", type="string", description="… only of this study (empty: all studies of the project)"),
        "target": Param("bia", type="string", enum=["bia", "dataverse", "zenodo"],
                        description="where to deposit: the BioImage Archive, Dataverse (Recherche Data Gouv) "
                                    "or Zenodo (connections biostudies_default, dataverse_default, zenodo_default)"),
        "publish": Param(True, type="boolean",
                         description="Dataverse/Zenodo: publish; false leaves a draft for a person to publish"),
        "include_zarr": Param(False, type="boolean",
                              description="Dataverse/Zenodo: also deposit each OME-Zarr as one ZIP archive"),
    },
    render_template_as_native_obj=True,
    doc_md=__doc__,
)
def microfair_deposit():
    @task.branch
    def choose_target(params: dict) -> str:
        """The BioImage Archive path, or the common Dataverse/Zenodo path."""
        return "validate" if (params.get("target") or "bia") == "bia" else "repository_validate"

    @task
    def repository_validate(params: dict, **context) -> dict:
        """Every citation field the target requires, and the files; nothing is sent when one is missing."""
        from microfair_airflow.operators.repository import validate_target

        return validate_target(params, context)

    @task
    def repository_deposit(params: dict, **context) -> dict:
        """Draft, upload (resumable, checksums), metadata, publish or leave the draft; PID into the ledger."""
        from microfair_airflow.operators.repository import deposit_target

        return deposit_target(params, context)

    @task
    def validate(params: dict, **context) -> dict:
        """Every field the BioImages.v5 template requires; nothing is uploaded when one is missing."""
        from airflow.sdk.exceptions import AirflowFailException

        from microfair.deposit import DepositInvalid, DepositSelection
        from microfair.deposit.study import StudyFileError
        from microfair.deposit.run import validate_deposit
        from microfair_airflow.common import facility, run_context

        cfg, ledger = facility()
        sel = DepositSelection(project=params.get("project") or None, study=params.get("study") or None)
        try:
            plan = validate_deposit(cfg, ledger, params["study_file"], sel, run_context(context))
        except (DepositInvalid, StudyFileError) as exc:
            raise AirflowFailException(str(exc)) from None
        print(f"{len(plan.files())} file(s) in {len(plan.components)} component(s) ready for {plan.root_path}")
        return {"files": len(plan.files()), "datasets": plan.uids(), "root_path": plan.root_path}

    @task
    def upload(params: dict, **context) -> dict:
        """Upload into the BioStudies user folder; files already there with the same size are skipped."""
        from microfair.deposit.run import upload_deposit
        from microfair_airflow.common import run_context
        from microfair_airflow.hooks.biostudies import BiostudiesHook

        cfg, ledger, plan = _plan(params, context, "upload")
        client = BiostudiesHook(cfg.biostudies.connection_id).get_conn(cfg)
        return upload_deposit(cfg, ledger, plan, client, run_context(context)).to_dict()

    @task
    def submit(params: dict, **context) -> dict:
        """Submit the PageTab asynchronously (after checking no file changed since upload)."""
        from microfair.deposit.run import submit_deposit
        from microfair_airflow.common import run_context
        from microfair_airflow.hooks.biostudies import BiostudiesHook

        cfg, ledger, plan = _plan(params, context, "submit")
        client = BiostudiesHook(cfg.biostudies.connection_id).get_conn(cfg)
        return submit_deposit(cfg, ledger, plan, client, run_context(context)).to_dict()

    @task
    def record(submission: dict, params: dict, **context) -> dict:
        """Write the accession (S-BIAD…) and the DOI into the ledger of every deposited dataset."""
        from microfair.deposit.run import SubmissionRef, record_deposit
        from microfair_airflow.common import run_context
        from microfair_airflow.hooks.biostudies import BiostudiesHook

        cfg, ledger, plan = _plan(params, context, "record")
        client = BiostudiesHook(cfg.biostudies.connection_id).get_conn(cfg)
        ref = SubmissionRef(submission["accno"], int(submission["version"]))
        body = record_deposit(cfg, ledger, plan, ref, client, run_context(context))
        print(f"deposited as {body['accession']} (DOI {body['doi']}): {body['url']}")
        return {k: body[k] for k in ("accession", "version", "doi", "url")}

    @task
    def datacite(params: dict, **context) -> dict:
        """DataCite 4.x JSON of the study; a draft DOI when the DataCite connection is configured."""
        from microfair.deposit.run import datacite_export
        from microfair_airflow.common import run_context
        from microfair_airflow.hooks.datacite import DataciteHook

        cfg, ledger, plan = _plan(params, context, "datacite")
        conn_id = cfg.datacite.connection_id
        client = DataciteHook(conn_id).get_conn() if DataciteHook.configured(conn_id) else None
        if client is None:
            print(f"no DataCite connection {conn_id!r}: exporting the JSON only")
        body = datacite_export(cfg, ledger, plan, client, run_context(context))
        return {"accession": body["accession"], "doi": body["doi"], "file": body["file"]}

    submitted = submit()
    wait = BiostudiesSubmissionSensor(
        task_id="wait", submission=submitted, study_file="{{ params.study_file }}",
        project="{{ params.project }}", study="{{ params.study }}",
        # biostudies.poll_seconds / timeout_hours from the facility file; the environment variable
        # MICROFAIR_BIOSTUDIES_POLL_SECONDS overrides the interval (tests, demo).
        poke_interval=float(os.environ.get("MICROFAIR_BIOSTUDIES_POLL_SECONDS")
                            or config_value("biostudies", "poll_seconds", default=30.0)),
        timeout=float(config_value("biostudies", "timeout_hours", default=24.0)) * 3600,
    )
    bia = validate()
    choose_target() >> [bia, repository_validate() >> repository_deposit()]
    bia >> upload() >> submitted >> wait >> record(submitted) >> datacite()


microfair_deposit()
