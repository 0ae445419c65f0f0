"""Operators for the dask-heavy ingest stages: conversion to OME-Zarr and QC.

They hold parameters only; ``execute`` calls the domain function in :mod:`microfair.ingest`. The conversion
runs on the dask scheduler named by the ``dask_default`` connection (scale-out, through :class:`DaskHook`);
without it, in the task's own process on the plane engine's threads (``microfair.convert.planes``, bounded by
``conversion.memory_limit_mb``), or on a local cluster of worker processes when ``dask.local_cluster`` is true.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator

log = logging.getLogger(__name__)


def raise_for_state(uid: str, state: str, ledger: Any) -> str:
    """Turn a domain outcome into the task outcome a facility manager expects to see.

    ``quarantined``: the task fails without retry (the reason is in the log and the ledger);
    ``not_ready``: the task is skipped (the file is picked up by a later scan).
    """
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    if state == "quarantined":
        ds = ledger.require(uid)
        raise AirflowFailException(f"{uid} ({ds.name}) quarantined: {ds.reason}")
    if state == "not_ready":
        raise AirflowSkipException(f"{uid}: not ready; left for the next scan")
    return uid


class DatasetStageOperator(BaseOperator):
    """Run one ingest stage on one dataset, with a dask client when the stage needs one.

    :param dataset_uid: ledger identifier of the dataset (templated; usually an upstream XCom).
    :param stage: ``convert`` or ``qc``.
    :param dask_conn_id: Airflow connection naming a dask scheduler (default: the facility file's
        ``dask.connection_id``, ``dask_default``); when it does not exist, the conversion runs in the task's
        process (plane engine), or on a local cluster sized for the machine with ``dask.local_cluster: true``.
    :param config_path: facility configuration; ``$MICROFAIR_CONFIG`` when omitted.
    """

    template_fields: Sequence[str] = ("dataset_uid", "config_path")
    ui_color = "#cfe8ff"

    def __init__(self, *, dataset_uid: str, stage: str, dask_conn_id: str | None = None,
                 config_path: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dataset_uid = dataset_uid
        self.stage = stage
        self.dask_conn_id = dask_conn_id
        self.config_path = config_path

    def execute(self, context: Any) -> str:
        from microfair import ingest
        from microfair_airflow.common import facility, run_context
        from microfair_airflow.hooks.dask import DaskHook

        cfg, ledger = facility(self.config_path)
        ctx = run_context(context)
        if self.stage == "convert":
            hook = DaskHook(dask_conn_id=self.dask_conn_id or cfg.dask.connection_id, settings=cfg.conversion,
                            dask_settings=cfg.dask)
            if hook.scheduler_address() is None and not cfg.dask.local_cluster:
                # no scheduler to scale out to: the plane engine on this process's threads, within
                # conversion.memory_limit_mb (microfair.convert.planes); dask.local_cluster: true starts workers
                log.info("%s: no dask connection %r: converting in this task's process (plane engine)",
                         self.dataset_uid, hook.dask_conn_id)
                state = ingest.convert_dataset(cfg, ledger, self.dataset_uid, ctx, client=None)
            else:
                with hook.client() as client:
                    state = ingest.convert_dataset(cfg, ledger, self.dataset_uid, ctx, client=client)
        elif self.stage == "qc":
            state = ingest.qc_dataset(cfg, ledger, self.dataset_uid, ctx)
        else:
            raise ValueError(f"unknown stage {self.stage!r}")
        return raise_for_state(self.dataset_uid, state, ledger)
