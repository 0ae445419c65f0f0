"""The deployed path: microfair_ingest under a real scheduler (LocalExecutor), triggered through the REST API.

One stack for the module (:func:`tests.support.airflow_local.local_airflow`: scheduler + dag-processor +
api-server, the environment ``make demo`` prints). Two checks:

1. a new acquisition reaches ``qc_done``: its convert task ran the local dask cluster inside a
   LocalExecutor task (spawned worker processes, which used to die re-importing the Airflow CLI), and the
   dashboard, with the UI's login session, shows it with its QC table and thumbnails that load;
2. a convert that fails *before* the domain code records anything (the ``dask_default`` connection
   names a scheduler that is not there) is a failed convert event with its message in the ledger,
   in ``Ledger.summary()`` problems (``microfair status``) and in the dashboard's Failures;
3. races under the parallel executor (4 worker slots): pairs of acquisitions on two microscopes that map
   to the same raw path, collected by mapped tasks at once, and a file still being appended: nothing is
   lost or overwritten, and the growing file is collected once, in its final version.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from microfair.config import init_local_config, load_config
from microfair.ledger import Ledger
from microfair.synthetic import textured_stack, write_ome_tiff
from tests.support.airflow_local import LocalAirflow, local_airflow
from tests.support.services import free_port

pytestmark = [pytest.mark.integration, pytest.mark.dag, pytest.mark.slow]

DAY = "2024-05-03"
DAG_ID = "microfair_ingest"


def _old(path: Path) -> Path:
    old = time.time() - 3600
    os.utime(path, (old, old))
    return path


def _acquisition(zone: Path, what: str, seed: int) -> Path:
    path = zone / "DEMO/Cells/e1" / f"{DAY}_DEMO_Cells_ALebon_{what}_RAW_v01.ome.tiff"
    return _old(write_ome_tiff(path, textured_stack((1, 2, 64, 64), seed=seed), channels=["DAPI", "GFP"]))


@pytest.fixture(scope="module")
def facility(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("deployed")
    config = init_local_config(root / "facility", ("scope-a", "scope-b"))
    data = yaml.safe_load(config.read_text())
    data["schedule"] = None  # only the runs this test triggers
    # two spawned worker processes in the convert task (the default without a connection converts in the task's
    # own process; the local cluster is what used to die under a real executor, so it is what this stack runs)
    data["dask"] = {"n_workers": 2, "local_cluster": True}
    for zone in data["landing_zones"]:
        zone["stability_seconds"] = 1
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    return root, config


@pytest.fixture(scope="module")
def stack(facility) -> Iterator[LocalAirflow]:
    root, config = facility
    with local_airflow(root / "stack", config) as st:
        st.wait_for_dag(DAG_ID)
        yield st


def _ledger(config: Path) -> Ledger:
    return Ledger(load_config(config).ledger.url, migrate=False)


def _ingest_until(stack: LocalAirflow, config: Path, source: Path, done: set[str]) -> tuple[dict, object]:
    """Trigger runs (at most three: a scan may need two looks to call a file quiescent) until the
    acquisition at ``source`` is in one of the ``done`` states; the last run and the dataset."""
    for _ in range(3):
        run = stack.trigger_and_wait(DAG_ID)
        ds = next((d for d in _ledger(config).datasets() if d.source_path == str(source)), None)
        if ds is not None and ds.state in done | {"quarantined"}:
            return run, ds
        time.sleep(2)
    raise AssertionError(f"{source} not ingested after 3 runs: {ds and ds.state}\n{stack.logs()}")


def _states(run: dict, task_id: str) -> list[str]:
    return [str(t["state"]) for t in run["tasks"] if t["task_id"] == task_id]


def test_a_new_acquisition_reaches_qc_under_local_executor(stack, facility):
    _, config = facility
    cfg = load_config(config)
    source = _acquisition(cfg.zone("scope-a").path, "Control", seed=1)
    run, ds = _ingest_until(stack, config, source, {"qc_done"})
    assert ds.state == "qc_done", (ds.state, ds.reason, run["tasks"])
    assert run["state"] == "success" and _states(run, "all_acquisitions_passed") == ["success"]
    assert _states(run, "ingest_acquisition.convert") == ["success"], run["tasks"]
    ledger = _ledger(config)
    convert = ledger.events(ds.uid, "convert")[-1]
    assert convert.state == "succeeded" and convert.details["dask"] == "distributed"
    assert convert.dag_id == DAG_ID and convert.run_id == run["dag_run_id"]
    assert Path(ds.zarr_path).is_dir() and ledger.get_record(ds.uid, "qc")
    # the dashboard, with the UI's login session, shows it with its QC table and thumbnails that load
    import re

    cookies = {c["name"]: c["value"] for c in stack.browser_cookies()}
    page = requests.get(f"{stack.url}/microfair/datasets/{ds.uid}", cookies=cookies, timeout=60)
    assert page.status_code == 200, page.text[:500]
    table = page.text.split('data-testid="qc-scene-0"', 1)[1].split("</table>", 1)[0]
    channels = ledger.get_record(ds.uid, "qc")["scenes"][0]["channels"]
    assert table.count("<tr data-channel=") == len(channels) >= 1, table[:2000]
    assert "DAPI" in table and table.count('class="histogram"') == len(channels), table[:2000]
    thumbs = re.findall(r'<img[^>]+src="([^"]+)"[^>]*data-testid="thumbnail"', page.text)
    assert thumbs, page.text[:3000]
    for src in thumbs:
        img = requests.get(f"{stack.url}{src}" if src.startswith("/") else src, cookies=cookies, timeout=60)
        assert img.status_code == 200 and img.content[:8] == b"\x89PNG\r\n\x1a\n", (src, img.status_code)
    assert requests.get(f"{stack.url}/microfair/datasets/{ds.uid}", timeout=60).status_code in (401, 403)


def test_a_convert_failure_before_the_domain_code_is_visible(stack, facility):
    _, config = facility
    cfg = load_config(config)
    # A scheduler that is not there: the task fails in DaskHook.get_conn, before convert_dataset runs.
    nowhere = free_port()
    r = stack.request("POST", "/api/v2/connections", json={
        "connection_id": cfg.dask.connection_id, "conn_type": "dask", "host": "127.0.0.1", "port": nowhere})
    assert r.ok, r.text
    try:
        source = _acquisition(cfg.zone("scope-a").path, "Treated", seed=2)
        run, ds = _ingest_until(stack, config, source, {"validated"})
    finally:
        stack.request("DELETE", f"/api/v2/connections/{cfg.dask.connection_id}")
    assert _states(run, "ingest_acquisition.convert") == ["failed"], run["tasks"]
    assert run["state"] == "failed"  # red in the UI, while report still ran for the others
    assert _states(run, "report") == ["success"] and _states(run, "all_acquisitions_passed") == ["upstream_failed"]

    ledger = _ledger(config)
    events = ledger.events(ds.uid, "convert")
    assert len(events) == 1, [(e.state, e.error) for e in events]  # recorded once, by the failure callback
    ev = events[0]
    assert ev.state == "failed" and f"127.0.0.1:{nowhere}" in ev.error, ev.error
    assert (ev.dag_id, ev.run_id, ev.task_id) == (DAG_ID, run["dag_run_id"], "ingest_acquisition.convert")
    assert ev.map_index is not None and ev.map_index >= 0
    assert ledger.stage_states(ds.uid)["convert"].state == "failed"
    # `microfair status` lists it
    problems = {p["uid"]: p for p in ledger.summary()["problems"]}
    assert ds.uid in problems and "convert" in problems[ds.uid]["reason"], problems
    # the dashboard's Failures, through the API server, logged in as the UI is (its session cookie)
    cookies = {c["name"]: c["value"] for c in stack.browser_cookies()}
    page = requests.get(f"{stack.url}/microfair/", cookies=cookies, timeout=60)
    assert page.status_code == 200, page.text[:500]
    failures = page.text.split('data-testid="failures"', 1)[1].split("</table>", 1)[0]
    assert ds.name in failures or ds.uid in failures, failures[:3000]
    assert f"127.0.0.1:{nowhere}" in failures, failures[:3000]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_races_under_the_parallel_executor_lose_nothing(stack, facility):
    _, config = facility
    cfg = load_config(config)
    a, b = cfg.zone("scope-a").path, cfg.zone("scope-b").path
    # Two pairs: the same Project/Study/Experiment/name on two microscopes, different pixels.
    pairs = []
    for i, what in enumerate(("Pair1", "Pair2")):
        pair = []
        for zone, seed in ((a, 10 + i), (b, 20 + i)):
            path = zone / "RACE/Cells/e1" / f"{DAY}_RACE_Cells_ALebon_{what}_RAW_v01.ome.tiff"
            pair.append(_old(write_ome_tiff(path, textured_stack((1, 1, 48, 48), seed=seed), channels=["DAPI"])))
        pairs.append(pair)
    # A file the acquisition software is still appending to while the first run scans.
    growing = b / "RACE/Cells/e2" / f"{DAY}_RACE_Cells_ALebon_Growing_RAW_v01.bin"
    growing.parent.mkdir(parents=True, exist_ok=True)
    growing.write_bytes(os.urandom(4096))
    stop = threading.Event()

    def append() -> None:
        while not stop.wait(0.3):
            with open(growing, "ab") as f:
                f.write(os.urandom(4096))

    writer = threading.Thread(target=append, daemon=True)
    writer.start()
    try:
        first = stack.trigger_and_wait(DAG_ID)
    finally:
        stop.set()
        writer.join()
    final = _sha256(growing)
    sources = [p for pair in pairs for p in pair] + [growing]
    ledger = _ledger(config)
    for _ in range(3):  # the growing file needs two unchanged looks, in later runs
        settled = {d.source_path: d for d in ledger.datasets() if d.state in ("qc_done", "quarantined", "validated")}
        if all(str(p) in settled for p in sources):
            break
        stack.trigger_and_wait(DAG_ID)
    rows = ledger.datasets()
    for src in sources:
        mine = [d for d in rows if d.source_path == str(src)]
        assert len(mine) == 1, (src, [(d.uid, d.state, d.reason) for d in mine])  # collected once
        assert mine[0].state in ("qc_done", "quarantined", "validated"), (src, mine[0].state, mine[0].reason)
    assert [d.sha256 for d in rows if d.source_path == str(growing)] == [final]  # its final version
    for pair in pairs:
        ds = [next(d for d in rows if d.source_path == str(p)) for p in pair]
        winners = [d for d in ds if d.state == "qc_done"]
        assert len(winners) == 1, [(d.state, d.reason) for d in ds]
        loser = next(d for d in ds if d is not winners[0])
        assert loser.state == "quarantined" and "name collision" in (loser.reason or ""), loser.reason
        # the loser's file is kept in quarantine, byte for byte
        kept = [Path(f.path) for f in ledger.files(loser.uid, "quarantine")]
        assert kept and _sha256(kept[0]) == _sha256(Path(loser.source_path))
    # every raw file holds exactly the bytes its ledger row claims
    for d in rows:
        if d.raw_path and Path(d.raw_path).exists():
            assert _sha256(Path(d.raw_path)) == d.sha256, d.uid
    assert first["state"] in ("success", "failed")  # losers are quarantined: a red run, never a stuck one
