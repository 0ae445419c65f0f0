"""The Dataverse/Zenodo tasks of ``microfair_deposit``: DAG params → domain calls, domain errors → task states.

A refusal that a retry cannot fix (an invalid study file, a wrong token, an unknown collection, a licence
refused, a file over the limit, a checksum mismatch) fails the task at once (``AirflowFailException``);
a 5xx or a broken connection that outlasts the client's own retries fails it normally, and the task's
retry resumes the same draft.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowFailException


def _selection(params: dict[str, Any]) -> Any:
    from microfair.deposit import DepositSelection

    return DepositSelection(project=params.get("project") or None, study=params.get("study") or None)


def target_for(name: str, cfg: Any) -> Any:
    """The target client of ``name`` from its Airflow connection (retries from the facility's BioStudies settings)."""
    kw = {"retries": cfg.biostudies.retries, "backoff_seconds": cfg.biostudies.backoff_seconds}
    if name == "dataverse":
        from microfair_airflow.hooks.dataverse import DataverseHook

        return DataverseHook().get_conn(**kw)
    if name == "zenodo":
        from microfair_airflow.hooks.zenodo import ZenodoHook

        return ZenodoHook().get_conn(**kw)
    raise AirflowFailException(f"unknown deposit target {name!r} (bia, dataverse or zenodo)")


def _options(params: dict[str, Any]) -> dict[str, Any]:
    return {"include_zarr": bool(params.get("include_zarr"))}


def validate_target(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    from microfair.deposit import DepositInvalid
    from microfair.deposit.study import StudyFileError
    from microfair.deposit.targets.run import LocalChecks, validate_repository
    from microfair_airflow.common import facility, run_context

    cfg, ledger = facility()
    name = params.get("target") or "bia"
    try:
        plan, items = validate_repository(cfg, ledger, params["study_file"], _selection(params), LocalChecks(name),
                                          run_context(context), **_options(params))
    except (DepositInvalid, StudyFileError) as exc:
        raise AirflowFailException(str(exc)) from None
    print(f"{len(items)} file(s) of {len(plan.uids())} dataset(s) ready for {name}")
    return {"files": len(items), "datasets": plan.uids(), "target": name}


def deposit_target(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    from microfair.deposit import DepositInvalid
    from microfair.deposit.run import FileChangedError
    from microfair.deposit.targets import RepositoryError, TransientError
    from microfair.deposit.targets.run import deposit
    from microfair_airflow.common import facility, run_context

    cfg, ledger = facility()
    name = params.get("target") or "bia"
    target = target_for(name, cfg)
    try:
        out = deposit(cfg, ledger, params["study_file"], _selection(params), target,
                      publish=bool(params.get("publish", True)), ctx=run_context(context), **_options(params))
    except TransientError:
        raise
    except (RepositoryError, DepositInvalid, FileChangedError) as exc:
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from None
    pub = out.publication
    print(f"{name}: {out.action}: {pub.pid} {pub.landing_page}")
    return {"target": name, "action": out.action, "state": pub.state, "pid": pub.pid,
            "landing_page": pub.landing_page}
