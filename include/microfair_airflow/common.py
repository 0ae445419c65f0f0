"""Helpers shared by every microfair task: the facility configuration, the ledger, the run context."""

from __future__ import annotations

import functools
from datetime import timedelta
from typing import Any

from microfair.config import FacilityConfig, load_config
from microfair.ledger import Ledger, RunContext


@functools.lru_cache(maxsize=4)
def _cached(path: str | None) -> tuple[FacilityConfig, Ledger]:
    cfg = load_config(path)
    return cfg, Ledger.from_config(cfg)


def facility(config_path: str | None = None) -> tuple[FacilityConfig, Ledger]:
    """The facility configuration (``$MICROFAIR_CONFIG``) and its ledger, loaded once per process."""
    return _cached(config_path)


def run_context(context: dict[str, Any] | None) -> RunContext:
    """Turn an Airflow task context into a ledger :class:`RunContext` (dag, run, task, map index, try)."""
    if not context:
        return RunContext()
    ti = context.get("ti") or context.get("task_instance")
    if ti is None:
        return RunContext()
    map_index = getattr(ti, "map_index", None)
    return RunContext(
        dag_id=getattr(ti, "dag_id", None),
        run_id=getattr(ti, "run_id", None),
        task_id=getattr(ti, "task_id", None),
        map_index=None if map_index is None or map_index < 0 else int(map_index),
        attempt=int(getattr(ti, "try_number", 1) or 1),
    )


def ingest_schedule(default: str | None = "*/10 * * * *") -> str | None:
    """The ingest schedule from the facility file, read cheaply at DAG-parse time.

    Only the ``schedule`` key is read (no validation, no ledger); any problem
    falls back to ``default`` so that a broken configuration still shows the DAG
    (its tasks then fail with the configuration error).
    """
    import os

    import yaml

    path = os.environ.get("MICROFAIR_CONFIG")
    if not path:
        return default
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
        return data.get("schedule", default)
    except (OSError, yaml.YAMLError, AttributeError):
        return default


def config_value(*keys: str, default: Any = None) -> Any:
    """One value of the facility file (``config_value("biostudies", "poll_seconds")``), read
    cheaply at DAG-parse time without validation; ``default`` when absent or unreadable."""
    import os

    import yaml

    path = os.environ.get("MICROFAIR_CONFIG")
    if not path:
        return default
    try:
        with open(path, encoding="utf-8") as f:
            node: Any = yaml.safe_load(f) or {}
        for key in keys:
            node = node[key]
        return default if node is None else node
    except (OSError, yaml.YAMLError, KeyError, TypeError, IndexError):
        return default


def task_defaults(*, retries: int, retry_delay: timedelta, max_retry_delay: timedelta) -> dict[str, Any]:
    """``default_args`` shared by the microfair DAGs: exponential back-off between retries, and every
    failure recorded in the ledger (:func:`microfair_airflow.failures.record_task_failure`).

    ``MICROFAIR_TASK_RETRIES`` overrides the retry count (0 for ``airflow dags test`` runs in the demo
    and the tests, which would otherwise wait out the retry delays).
    """
    import os

    from microfair_airflow.failures import record_task_failure

    return {
        "owner": "microfair",
        "retries": int(os.environ.get("MICROFAIR_TASK_RETRIES", str(retries))),
        "retry_delay": retry_delay,
        "retry_exponential_backoff": True,
        "max_retry_delay": max_retry_delay,
        "on_failure_callback": record_task_failure,
        "on_retry_callback": record_task_failure,  # a failed try that will be retried is a failed attempt too
    }


def report_ingest(done: list[str]) -> dict[str, Any]:
    """Print the ledger summary a facility manager reads after each ingest run; return it for XCom."""
    _, ledger = facility()
    summary = ledger.summary()
    print(f"this run ingested {len(done)} acquisition(s); ledger: {summary['by_state']}")
    for p in summary["problems"]:
        print(f"  {p['state']}: {p['name']} ({p['uid']}): {p['reason']}")
    return {"ingested": done, "ledger": summary["by_state"], "eln": eln_sweep()}


def eln_sweep() -> dict[str, int]:
    """Comment on the linked eLabFTW entries of ingested and deposited datasets; never fails the task.

    Without the connection (``eln.connection_id``) the post-backs stay pending, shown in the dashboard.
    """
    from microfair.eln import due_posts, sweep
    from microfair_airflow.hooks.elabftw import ElabftwHook

    cfg, ledger = facility()
    events = list(cfg.eln.post_back)
    if not events or not due_posts(ledger, events):
        return {}
    try:
        client, why = ElabftwHook.client_or_reason(cfg.eln.connection_id)
        counts = sweep(ledger, client, events, why_no_client=why or "no eLabFTW connection")
    except Exception as exc:  # noqa: BLE001 - the notebook must never fail an ingest run
        print(f"eLabFTW post-backs not attempted: {type(exc).__name__}: {exc}")
        return {"error": 1}
    print(f"eLabFTW post-backs: {counts}")
    return counts


def each_dataset(uids: list[str], stage: Any, want: str, context: dict[str, Any] | None) -> list[str]:
    """Run ``stage(cfg, ledger, uid, ctx)`` on every uid of a batch; return those that reached ``want``.

    A dataset that fails is recorded in the ledger (by the stage, or here when it failed before the stage
    recorded anything, e.g. in a state check) and left out; the batch goes on.
    """
    import logging

    from microfair_airflow.failures import record_failure, stage_of

    log = logging.getLogger("microfair.batch")
    cfg, ledger = facility()
    ctx = run_context(context)
    name = stage_of(ctx.dag_id, ctx.task_id)
    done = []
    for uid in uids:
        try:
            state = stage(cfg, ledger, uid, ctx)
        except Exception as exc:  # noqa: BLE001 - one dataset's failure must not stop its batch
            log.error("%s: %s failed: %s", uid, getattr(stage, "__name__", stage), exc)
            if name and ledger.get(uid) is not None:
                record_failure(ledger, uid, name, ctx, f"{type(exc).__name__}: {exc}")
            continue
        if state == want:
            done.append(uid)
        else:
            log.warning("%s: ended %s", uid, state)
    return done


def require_landing_zones() -> int:
    """Fail (no retry) when a landing zone is missing or unmounted, naming it; the number of zones otherwise.

    The ingest DAGs run it beside ``discover``, so the other microscopes' acquisitions are still ingested
    while the run is failed (red) and the dashboard's missing-zone card shows the failed task.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from microfair.landing import missing_zones

    cfg, _ = facility()
    missing = missing_zones(cfg)
    if missing:
        names = ", ".join(f"{z.microscope} ({z.path})" for z in missing)
        raise AirflowFailException(f"landing zone(s) missing or not mounted: {names}; "
                                   "their acquisitions cannot be seen until the folder is back")
    print(f"all {len(cfg.landing_zones)} landing zone(s) are mounted")
    return len(cfg.landing_zones)
