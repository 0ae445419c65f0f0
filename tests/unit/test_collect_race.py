"""Collects in parallel processes: exclusive publication, one winner per raw path, nothing lost.

These start real processes (``multiprocessing``), because races only show there; the files are
small so the whole module stays well under 30 s on two cores. The processes come from a fork
server (a clean single-threaded parent), never from a fork of the test process: pytest's process
holds threads (and their locks) by then, and a forked child could hang on one.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import threading
import time
from pathlib import Path

import pytest
import yaml

from microfair.collect import Acquisition, collect, scan
from microfair.config import init_local_config, load_config
from microfair.ledger import Ledger
from microfair.publish import publish_dir, publish_file

PROCS = mp.get_context("forkserver")
PROCS.set_forkserver_preload(["microfair.collect", "microfair.config", "microfair.ledger"])


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _facility(root: Path, microscopes: tuple[str, ...], stability: float, tree: str = "folders") -> Path:
    config = init_local_config(root, microscopes)
    data = yaml.safe_load(config.read_text())
    for zone in data["landing_zones"]:
        zone["stability_seconds"] = stability
        zone["tree"] = tree
    config.write_text(yaml.safe_dump(data))
    return config


def _collect_in_child(config: str, acq: dict, barrier, results) -> None:
    cfg = load_config(config)
    ledger = Ledger.from_config(cfg, migrate=False)
    barrier.wait()
    try:
        results[acq["uid"]] = collect(cfg, ledger, Acquisition(**acq))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the test
        results[acq["uid"]] = f"error: {type(exc).__name__}: {exc}"


def test_two_processes_collecting_to_one_raw_path_have_exactly_one_winner(tmp_path):
    config = _facility(tmp_path / "f", ("scope",), 0, tree="name")
    cfg = load_config(config)
    zone = cfg.landing_zones[0].path
    rounds = 4
    for r in range(rounds):  # each round: two different files that map to the same raw path
        name = f"2024-05-0{r + 1}_TNT_MicroAlgue_ALebon_Controle_RAW_v01.czi"
        for pc in ("pc1", "pc2"):
            p = zone / pc / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(os.urandom(16 << 20))  # long enough copies to overlap
    ledger = Ledger.from_config(cfg)
    ready = scan(cfg, ledger).ready
    assert len(ready) == 2 * rounds
    with PROCS.Manager() as manager:
        results = manager.dict()
        for r in range(rounds):
            pair = [a for a in ready if f"2024-05-0{r + 1}_" in a.relpath]
            barrier = PROCS.Barrier(2)
            procs = [PROCS.Process(target=_collect_in_child, args=(str(config), a.to_dict(), barrier, results))
                     for a in pair]
            for p in procs:
                p.start()
            for p in procs:
                p.join(60)
                assert p.exitcode == 0
            outcomes = sorted(results[a.uid] for a in pair)
            assert outcomes == ["collected", "quarantined"], outcomes
            winner, loser = sorted(pair, key=lambda a: results[a.uid] != "collected")
            w, lo = ledger.require(winner.uid), ledger.require(loser.uid)
            raw = Path(w.raw_path)
            assert _sha(raw) == w.sha256 == _sha(Path(winner.source))  # the raw file holds the winner's bytes
            assert lo.raw_path is None and "name collision" in lo.reason and winner.uid in lo.reason
            [q] = ledger.files(loser.uid, "quarantine")
            assert _sha(Path(q.path)) == _sha(Path(loser.source))  # the loser's file is kept, not lost
            assert not list(raw.parent.glob(".*partial*"))


def _publish_in_child(tmp: str, dest: str, barrier, results, key: str, folder: bool) -> None:
    barrier.wait()
    try:
        (publish_dir if folder else publish_file)(tmp, dest)
        results[key] = "published"
    except FileExistsError:
        results[key] = "exists"


@pytest.mark.parametrize("folder", [False, True])
def test_publication_never_replaces_what_another_process_published(tmp_path, folder):
    with PROCS.Manager() as manager:
        results = manager.dict()
        for r in range(5):
            dest = tmp_path / f"final-{r}"
            tmps = []
            for i in range(2):
                t = tmp_path / f".tmp-{r}-{i}"
                if folder:
                    (t / "0").mkdir(parents=True)
                    (t / "0" / "chunk").write_bytes(f"{i}".encode())
                else:
                    t.write_bytes(f"{i}".encode())
                tmps.append(t)
            barrier = PROCS.Barrier(2)
            procs = [PROCS.Process(target=_publish_in_child,
                                  args=(str(t), str(dest), barrier, results, f"{r}-{i}", folder))
                     for i, t in enumerate(tmps)]
            for p in procs:
                p.start()
            for p in procs:
                p.join(30)
            got = [results[f"{r}-{i}"] for i in range(2)]
            assert sorted(got) == ["exists", "published"]
            won = got.index("published")
            content = (dest / "0" / "chunk") if folder else dest
            assert content.read_bytes() == f"{won}".encode()
            assert not tmps[won].exists() and tmps[1 - won].exists()  # the loser's temporary is its own


def test_a_folder_is_never_published_onto_an_empty_folder(tmp_path):
    tmp, dest = tmp_path / ".tmp", tmp_path / "out.ome.zarr"
    tmp.mkdir()
    dest.mkdir()  # os.rename would silently replace it
    with pytest.raises(FileExistsError):
        publish_dir(tmp, dest)
    assert tmp.is_dir() and dest.is_dir() and not any(dest.iterdir())


def test_zarr_publication_refuses_a_folder_that_appeared_meanwhile(tmp_path, monkeypatch):
    from microfair.convert import writer

    out = tmp_path / "x.ome.zarr"
    (out / "0").mkdir(parents=True)
    (out / "0" / "old").write_text("previous conversion")
    tmp = tmp_path / ".x.ome.zarr.tmp-1"
    tmp.mkdir()
    real = writer.publish_dir

    def someone_else_first(src, dst):
        Path(dst).mkdir()  # an empty folder arrives between moving the old copy aside and publishing
        return real(src, dst)

    monkeypatch.setattr(writer, "publish_dir", someone_else_first)
    with pytest.raises(FileExistsError, match="appeared during the conversion; nothing was replaced"):
        writer._publish(tmp, out, overwrite=True, who="mf-x")
    assert tmp.is_dir() and out.is_dir() and not any(out.iterdir())  # the intruder is untouched
    [old] = [p for p in tmp_path.iterdir() if ".old-" in p.name]
    assert (old / "0" / "old").read_text() == "previous conversion"  # and the previous copy is kept


# -- done when: 50 acquisitions, 2 landing zones, colliding pairs, growing files, 4 processes --------------
def _collect_one(args: tuple[str, dict]) -> tuple[str, str]:
    config, acq = args
    cfg = load_config(config)
    ledger = Ledger.from_config(cfg, migrate=False)
    try:
        return acq["uid"], collect(cfg, ledger, Acquisition(**acq))
    except Exception as exc:  # noqa: BLE001 - NotReady etc.: the next scan offers it again
        return acq["uid"], f"{type(exc).__name__}: {exc}"
    finally:
        ledger.engine.dispose()


def _grow(paths: list[Path], stop: threading.Event) -> None:
    while not stop.is_set():
        for p in paths:
            with open(p, "ab") as f:
                f.write(os.urandom(512))
        time.sleep(0.1)


def test_fifty_acquisitions_four_processes_nothing_lost(tmp_path):
    t0 = time.monotonic()
    config = _facility(tmp_path / "f", ("scope-a", "scope-b"), 0.5)
    cfg = load_config(config)
    a, b = (z.path for z in cfg.landing_zones)
    files: list[Path] = []
    for i in range(20):  # 20 pairs: the same Project/Study/Experiment/name on both microscopes
        rel = f"TNT/Study{i % 4}/exp{i % 5}/2024-05-02_TNT_S_ALebon_C{i}_RAW_v01.czi"
        for zone in (a, b):
            p = zone / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(os.urandom(32 << 10))
            files.append(p)
    growing = []
    for i in range(10):  # 10 singles, 5 of them still being written
        p = (a if i % 2 else b) / f"DEMO/Solo/e1/2024-05-03_DEMO_Solo_ALebon_C{i}_RAW_v01.czi"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(16 << 10))
        files.append(p)
        if i < 5:
            growing.append(p)
    assert len(files) == 50
    stop = threading.Event()
    writer = threading.Thread(target=_grow, args=(growing, stop), daemon=True)
    with PROCS.Pool(4) as pool:
        writer.start()
        try:
            ledger = Ledger.from_config(cfg)
            rounds = 0
            while True:
                rounds += 1
                if rounds == 4:
                    stop.set()  # the acquisition software finishes the growing files
                    writer.join()
                res = scan(cfg, ledger, settle_up_to=0)
                if not res.ready and not res.waiting and stop.is_set():
                    break
                assert rounds < 200, f"still not done after {rounds} scans: {res.waiting[:3]}"
                ready = sorted(res.ready, key=lambda x: x.relpath)  # the two of a pair side by side
                pool.map(_collect_one, [(str(config), x.to_dict()) for x in ready], chunksize=1)
                time.sleep(0.2)
        finally:
            stop.set()
            writer.join()
    datasets = ledger.datasets()
    by_source: dict[str, list] = {}
    for ds in datasets:
        by_source.setdefault(ds.source_path, []).append(ds)
    assert set(by_source) == {str(p) for p in files}
    collected_raw = []
    for p in files:
        versions = sorted(by_source[str(p)], key=lambda d: d.version)
        final = versions[-1]
        assert [d.state for d in versions[:-1]] == ["superseded"] * (len(versions) - 1), [d.state for d in versions]
        assert final.state in ("collected", "quarantined"), (p, final.state, final.reason)
        assert final.size_bytes == p.stat().st_size  # the final version, not a truncated one
        if final.state == "collected":
            assert _sha(Path(final.raw_path)) == final.sha256 == _sha(p)
            collected_raw.append(final.raw_path)
        else:
            assert "name collision" in final.reason
            [q] = ledger.files(final.uid, "quarantine")
            assert _sha(Path(q.path)) == _sha(p)  # recorded, and kept
    for rel_pair in range(20):
        pair = files[2 * rel_pair: 2 * rel_pair + 2]
        states = sorted(max(by_source[str(p)], key=lambda d: d.version).state for p in pair)
        assert states == ["collected", "quarantined"], states  # exactly one winner per raw path
    for p in growing:
        final = max(by_source[str(p)], key=lambda d: d.version)
        assert final.state == "collected" and Path(final.raw_path).read_bytes() == p.read_bytes()
    # every raw file on disk is exactly one dataset's, with the ledger's SHA-256; no partial is left
    on_disk = [x for x in cfg.storage.raw.rglob("*") if x.is_file()]
    assert not [x for x in on_disk if ".partial-" in x.name]
    raw_rows = {d.raw_path: d for d in datasets if d.raw_path}
    assert sorted(str(x) for x in on_disk) == sorted(raw_rows)
    assert all(_sha(Path(k)) == d.sha256 for k, d in raw_rows.items())
    assert len(collected_raw) == len(set(collected_raw)) == 30
    print(f"50 acquisitions, 4 processes: {rounds} scans, {time.monotonic() - t0:.1f}s")
