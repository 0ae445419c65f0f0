"""DaskHook: scheduler from the Airflow connection (a real tcp scheduler on 127.0.0.1), else a local cluster."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("airflow.sdk")

from airflow.sdk import Connection  # noqa: E402
from distributed import LocalCluster  # noqa: E402

from microfair.config.core import ConversionSettings, DaskSettings  # noqa: E402
from microfair.convert import convert_to_zarr  # noqa: E402
from microfair.imaging import open_image  # noqa: E402
from microfair.synthetic import textured_stack, write_ome_tiff  # noqa: E402
from microfair_airflow.hooks.dask import DaskHook, local_cluster_options, scheduler_address  # noqa: E402


@pytest.fixture(autouse=True)
def own_airflow_home(tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    monkeypatch.delenv("AIRFLOW_CONN_DASK_DEFAULT", raising=False)


def test_local_cluster_is_sized_for_the_machine():
    opts = local_cluster_options(ConversionSettings(memory_limit_mb=1600), DaskSettings(), cores=4)
    assert opts["n_workers"] == 4 and opts["threads_per_worker"] == 1 and opts["memory_limit"] == "400MiB"
    opts = local_cluster_options(ConversionSettings(memory_limit_mb=1600), DaskSettings(n_workers=2), cores=8)
    assert opts["n_workers"] == 2 and opts["memory_limit"] == "800MiB"
    assert opts["host"] == "127.0.0.1"


def test_inside_a_daemonic_process_the_workers_are_threads():
    """A Celery prefork worker runs tasks in daemonic processes, which may not have children."""
    assert local_cluster_options(daemon=False, cores=2)["processes"] is True
    opts = local_cluster_options(ConversionSettings(memory_limit_mb=1600), DaskSettings(), cores=2, daemon=True)
    assert opts["processes"] is False and opts["n_workers"] == 2 and opts["memory_limit"] == "800MiB"


def _start_in_daemon(q) -> None:
    from microfair_airflow.hooks.dask import DaskHook

    try:
        with DaskHook(dask_conn_id="no_such_connection_for_test").client() as client:
            q.put(client.submit(sum, [1, 2, 3]).result())
    except Exception as exc:  # reported to the parent
        q.put(repr(exc))


def test_a_local_cluster_starts_inside_a_daemonic_process():
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # fork from a threaded pytest process can deadlock
    q = ctx.Queue()
    proc = ctx.Process(target=_start_in_daemon, args=(q,), daemon=True)
    proc.start()
    try:
        result = q.get(timeout=300)
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
    assert result == 6


@pytest.mark.parametrize(("conn", "address"), [
    (Connection(conn_id="a", conn_type="tcp", host="127.0.0.1", port=8786), "tcp://127.0.0.1:8786"),
    (Connection(conn_id="b", conn_type="dask", host="sched.local"), "tcp://sched.local:8786"),
    (Connection(conn_id="c", conn_type="dask", host="sched.local", port=9000, extra='{"protocol": "tls"}'),
     "tls://sched.local:9000"),
])
def test_scheduler_address_from_connection(conn, address):
    assert scheduler_address(conn) == address


def test_no_connection_starts_a_local_cluster_and_closes_it(tmp_path):
    hook = DaskHook(settings=ConversionSettings(memory_limit_mb=512), dask_settings=DaskSettings(n_workers=1))
    assert hook.scheduler_address() is None
    data = textured_stack((1, 2, 64, 64), seed=1)
    src = write_ome_tiff(tmp_path / "in.ome.tiff", data)
    with hook.client() as client:
        workers = client.scheduler_info()["workers"]
        assert len(workers) == 1
        assert next(iter(workers.values()))["memory_limit"] == 512 * 2**20
        cluster = hook._cluster
        result = convert_to_zarr(open_image(src), tmp_path / "x.ome.zarr",
                                 settings=ConversionSettings(chunk_xy=32, min_level_size=16), ome_xml=None,
                                 client=client)
    assert hook._client is None and cluster.status.name == "closed"
    import zarr

    np.testing.assert_array_equal(zarr.open_array(str(result.path / "0" / "0"), mode="r")[0], data)


def test_connection_names_a_real_tcp_scheduler(tmp_path, monkeypatch):
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp", host="127.0.0.1",
                      scheduler_port=0,
                      dashboard_address=":0") as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tcp://127.0.0.1:")
        monkeypatch.setenv("AIRFLOW_CONN_DASK_DEFAULT", address)
        hook = DaskHook()
        assert hook.scheduler_address() == address
        with hook.client() as client:
            assert client.scheduler.address == address
            assert hook._cluster is None  # no local cluster started
            assert client.submit(sum, [1, 2, 3]).result() == 6
        assert cluster.status.name == "running"  # the hook does not stop a scheduler it did not start


# The main module of a task process under a real executor: the `airflow` CLI, imported again by every process
# that `spawn` starts, with the database URL the task supervisor blocks (block_orm_access).
TASK_RUNNER_MAIN = r'''
import airflow.settings  # what the airflow CLI imports; a spawned child re-imports this main module
if __name__ == "__main__":
    from airflow.sdk.execution_time.supervisor import block_orm_access

    block_orm_access()  # as the supervisor does in every task process
    from microfair.config.core import ConversionSettings, DaskSettings
    from microfair_airflow.hooks.dask import DaskHook

    hook = DaskHook(dask_conn_id="no_such_connection_for_test", settings=ConversionSettings(memory_limit_mb=512),
                    dask_settings=DaskSettings(n_workers=1))
    with hook.client() as client:
        assert hook._cluster is not None and next(iter(hook._cluster.workers.values())).__class__.__name__ == "Nanny"
        print("RESULT", client.submit(sum, [1, 2, 3]).result(), flush=True)
    import sys
    assert sys.modules["__main__"].__file__ == __file__  # the real main module is back
'''


def test_a_local_cluster_starts_inside_a_task_process_of_a_real_executor(tmp_path):
    """Worker processes must not re-import the task runner's main module (it dies on the blocked DB URL)."""
    import os
    import subprocess
    import sys

    script = tmp_path / "task_runner_main.py"
    script.write_text(TASK_RUNNER_MAIN)
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow"), "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("AIRFLOW_CONN_DASK_DEFAULT", None)
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert "Could not parse SQLAlchemy URL" not in proc.stderr
    assert proc.returncode == 0 and "RESULT 6" in proc.stdout, proc.stderr[-3000:]


def test_the_main_module_is_restored_after_nested_uses():
    import sys

    from microfair_airflow.hooks.dask import clean_main_module

    main = sys.modules["__main__"]
    with clean_main_module():
        inner = sys.modules["__main__"]
        assert inner is not main and getattr(inner, "__file__", None) is None and inner.__spec__ is None
        with clean_main_module():
            assert sys.modules["__main__"] is inner
        assert sys.modules["__main__"] is inner  # still in use by the outer block
    assert sys.modules["__main__"] is main


@pytest.mark.parametrize("local_cluster,expect", [(False, "in-process"), (True, "cluster")])
def test_without_a_connection_the_convert_task_runs_in_process_unless_a_local_cluster_is_asked(
        monkeypatch, local_cluster, expect):
    """No scheduler to scale out to: the plane engine in the task's process (client None); ``dask.local_cluster``
    keeps the local cluster of worker processes."""
    from contextlib import contextmanager
    from types import SimpleNamespace

    import microfair.ingest as ingest
    import microfair_airflow.common as common
    from microfair.config.core import DaskSettings
    from microfair_airflow.operators.ingest import DatasetStageOperator

    cfg = SimpleNamespace(dask=DaskSettings(local_cluster=local_cluster), conversion=ConversionSettings())
    monkeypatch.setattr(common, "facility", lambda path: (cfg, SimpleNamespace()))
    monkeypatch.setattr(common, "run_context", lambda context: "ctx")
    monkeypatch.setattr(DaskHook, "scheduler_address", lambda self: None)
    sentinel = object()

    @contextmanager
    def fake_client(self):
        yield sentinel

    monkeypatch.setattr(DaskHook, "client", fake_client)
    seen = []
    monkeypatch.setattr(ingest, "convert_dataset",
                        lambda cfg, ledger, uid, ctx, client=None: seen.append(client) or "converted")
    op = DatasetStageOperator(task_id="convert", dataset_uid="MF-1", stage="convert")
    assert op.execute({}) == "MF-1"  # the dataset uid goes on to the next task
    assert seen == [None] if expect == "in-process" else seen == [sentinel]
