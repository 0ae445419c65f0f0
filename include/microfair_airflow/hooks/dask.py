"""DaskHook: a ``distributed.Client`` for the conversion and QC of one image.

The Airflow connection ``dask_default`` (or ``dask_conn_id``) names a dask scheduler:
host and port (default 8786), protocol ``tcp`` unless the connection's extra says
``{"protocol": "tls"}`` or similar. Without that connection, a LocalCluster sized for this
machine is started: one worker per core (``DaskSettings.n_workers`` overrides), one thread
each, and ``ConversionSettings.memory_limit_mb`` split evenly between the workers.

The local workers are processes started with ``spawn`` while ``__main__`` is an empty
module (:func:`clean_main_module`). A spawned process re-imports its parent's main module;
inside an Airflow task that is the ``airflow`` CLI, which, under a real executor, dies on the
database URL the task supervisor blocks (``airflow-db-not-allowed:///``): "Nanny failed to start
worker process". With a clean main module the workers import only dask and the domain code.
In a daemonic process (a Celery prefork worker), which may not have children, the workers are
threads. See docs/scale-out.md, "The local dask cluster inside a task".

Example connection (environment variable)::

    AIRFLOW_CONN_DASK_DEFAULT='tcp://dask-scheduler.facility.local:8786'
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from airflow.sdk import BaseHook

from microfair.config.core import ConversionSettings, DaskSettings

log = logging.getLogger(__name__)

DEFAULT_PORT = 8786


def local_cluster_options(settings: ConversionSettings | None = None, dask_settings: DaskSettings | None = None,
                          cores: int | None = None, daemon: bool | None = None) -> dict[str, Any]:
    """LocalCluster keyword arguments for this machine (pure function, for tests and logs).

    Worker processes cannot be started from a daemonic process (a Celery prefork worker
    runs its tasks in one), so there the cluster runs its workers as threads in the task's
    process; same worker count and memory bound.
    """
    if daemon is None:
        daemon = multiprocessing.current_process().daemon
    settings = settings or ConversionSettings()
    dask_settings = dask_settings or DaskSettings()
    n_cores = cores or os.cpu_count() or 1
    workers = dask_settings.n_workers or n_cores
    per_worker_mb = max(64, settings.memory_limit_mb // workers)
    options: dict[str, Any] = {
        "n_workers": workers,
        "threads_per_worker": dask_settings.threads_per_worker,
        "memory_limit": f"{per_worker_mb}MiB",
        "processes": not daemon,
        "dashboard_address": ":0",
    }
    if not daemon:  # threads talk in-process (inproc://), with no port to bind
        options["host"] = "127.0.0.1"
    return options


_main_lock = threading.Lock()
_main_users = 0
_saved_main: types.ModuleType | None = None


@contextmanager
def clean_main_module() -> Iterator[None]:
    """While the block runs, ``sys.modules["__main__"]`` is an empty module.

    ``multiprocessing``'s ``spawn`` (dask's default start method) makes every child import the
    parent's main module first, by name or by path. An empty module has neither, so the child
    imports nothing of the parent's program (in a task: the Airflow CLI and its settings).
    Re-entrant and thread-safe: the real main module is back when the last user leaves.
    """
    global _main_users, _saved_main
    with _main_lock:
        if _main_users == 0:
            _saved_main = sys.modules.get("__main__")
            clean = types.ModuleType("__main__", "stand-in main module while a local dask cluster runs")
            sys.modules["__main__"] = clean
        _main_users += 1
    try:
        yield
    finally:
        with _main_lock:
            _main_users -= 1
            if _main_users == 0:
                if _saved_main is not None:
                    sys.modules["__main__"] = _saved_main
                _saved_main = None


def scheduler_address(conn: Any) -> str:
    """``protocol://host:port`` of the scheduler named by an Airflow connection."""
    host = (conn.host or "").strip()
    if not host:
        raise ValueError(f"connection {conn.conn_id!r} has no host")
    if "://" in host:
        return host if host.rsplit(":", 1)[-1].isdigit() else f"{host}:{conn.port or DEFAULT_PORT}"
    extra = conn.extra_dejson or {}
    protocol = extra.get("protocol") or (conn.conn_type if conn.conn_type in ("tcp", "tls", "ucx", "inproc") else "tcp")
    return f"{protocol}://{host}:{conn.port or DEFAULT_PORT}"


class DaskHook(BaseHook):
    """Client for a dask scheduler from an Airflow connection, or for a local cluster.

    :param dask_conn_id: Airflow connection naming the scheduler (host:port); when it does not
        exist, a LocalCluster is started on this machine.
    :param settings: conversion settings (``memory_limit_mb`` bounds the local cluster).
    :param dask_settings: local cluster size (``n_workers``, ``threads_per_worker``).
    :param timeout: seconds to wait for a remote scheduler.
    """

    conn_name_attr = "dask_conn_id"
    default_conn_name = "dask_default"
    conn_type = "dask"
    hook_name = "Dask scheduler"

    def __init__(self, dask_conn_id: str = default_conn_name, settings: ConversionSettings | None = None,
                 dask_settings: DaskSettings | None = None, timeout: float = 30.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dask_conn_id = dask_conn_id
        self.settings = settings or ConversionSettings()
        self.dask_settings = dask_settings or DaskSettings()
        self.timeout = timeout
        self._client: Any = None
        self._cluster: Any = None
        self._clean_main: Any = None

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The connection form (Airflow 3.2+ reads the same declaration from the provider info)."""
        from microfair_airflow.provider import ui_field_behaviour

        return ui_field_behaviour(cls.conn_type)

    def test_connection(self, timeout: float = 5.0) -> tuple[bool, str]:
        """Connect to the connection's scheduler within ``timeout`` seconds and count its workers.

        The "Test" button of the Connections page; it never starts a local cluster.
        """
        try:
            address = scheduler_address(self.get_connection(self.dask_conn_id))
        except Exception as exc:  # noqa: BLE001 - shown to the user
            return False, f"{type(exc).__name__}: {exc}"
        try:
            from distributed import Client

            with Client(address, timeout=timeout, set_as_default=False) as client:
                workers = len(client.scheduler_info(n_workers=-1).get("workers", {}))
        except Exception as exc:  # noqa: BLE001 - OSError/TimeoutError from distributed, shown to the user
            return False, f"no dask scheduler answered at {address} within {timeout:g} s ({type(exc).__name__}: {exc})"
        return True, f"connected to the dask scheduler at {address}: {workers} worker(s)"

    def scheduler_address(self) -> str | None:
        """The scheduler address of the connection, or None when the connection does not exist."""
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            conn = self.get_connection(self.dask_conn_id)
        except AirflowNotFoundException:
            return None
        return scheduler_address(conn)

    def get_conn(self) -> Any:
        """A connected ``distributed.Client`` (remote scheduler, else a new LocalCluster)."""
        from distributed import Client, LocalCluster

        if self._client is not None:
            return self._client
        address = self.scheduler_address()
        if address:
            log.info("dask: connecting to the scheduler at %s (connection %s)", address, self.dask_conn_id)
            self._client = Client(address, timeout=self.timeout, set_as_default=False)
        else:
            options = local_cluster_options(self.settings, self.dask_settings)
            log.info("dask: no connection %r; starting a local cluster: %d worker(s) x %d thread(s), %s each",
                     self.dask_conn_id, options["n_workers"], options["threads_per_worker"], options["memory_limit"])
            if options["processes"]:
                # held for the cluster's lifetime: a nanny also spawns a worker again after a restart
                self._clean_main = clean_main_module()
                self._clean_main.__enter__()
            try:
                self._cluster = LocalCluster(**options)
                self._client = Client(self._cluster, set_as_default=False)
            except BaseException:
                self.close()
                raise
        return self._client

    def close(self) -> None:
        """Close the client, and the local cluster if this hook started one."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None
        if self._clean_main is not None:
            self._clean_main.__exit__(None, None, None)
            self._clean_main = None

    @contextmanager
    def client(self) -> Iterator[Any]:
        """``with DaskHook(...).client() as client:`` — closed (with its local cluster) on exit."""
        try:
            yield self.get_conn()
        finally:
            self.close()
