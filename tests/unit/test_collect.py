import errno
import os
import stat
import time
from pathlib import Path

import pytest

from microfair import collect as col
from microfair.checksum import digest_file
from microfair.collect import NotReady, DestinationFull, collect, destination, scan

GOOD = "2024-05-02_TNT_MicroAlgue_ALebon_Controle_RAW_v01.czi"


def drop(cfg, rel: str, data: bytes, age: float = 3600) -> Path:
    p = cfg.landing_zones[0].path / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    t = time.time() - age
    os.utime(p, (t, t))
    return p


def test_ready_file_is_copied_checksummed_and_read_only(facility_config, ledger):
    src = drop(facility_config, f"TNT/Algae/exp1/{GOOD}", os.urandom(3 << 20))
    before = (src.stat().st_mtime_ns, digest_file(src))
    [acq] = scan(facility_config, ledger).ready
    assert collect(facility_config, ledger, acq) == "collected"
    ds = ledger.require(acq.uid)
    raw = Path(ds.raw_path)
    assert raw == facility_config.storage.raw / "TNT/Algae/exp1" / GOOD
    assert digest_file(raw).sha256 == ds.sha256 == before[1].sha256
    assert not (raw.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    assert (src.stat().st_mtime_ns, digest_file(src)) == before  # source untouched
    assert (ds.project, ds.study, ds.experiment) == ("TNT", "Algae", "exp1")
    assert not list(raw.parent.glob(".*partial*"))
    # a second scan does not pick it up again
    assert scan(facility_config, ledger).ready == []


def test_tree_from_name_tokens_when_folders_are_missing(facility_config, ledger):
    drop(facility_config, GOOD, b"x" * 100)
    [acq] = scan(facility_config, ledger).ready
    assert destination(facility_config, acq).relative_to(facility_config.storage.raw).parts[:3] == (
        "TNT", "MicroAlgue", "2024-05-02")


def test_growing_file_waits(facility_config, ledger):
    facility_config.landing_zones[0].stability_seconds = 30
    drop(facility_config, GOOD, b"partial", age=1)
    res = scan(facility_config, ledger)
    assert res.ready == [] and "waiting until unchanged" in res.waiting[0].why


def test_file_that_grows_during_the_copy_is_not_published(facility_config, ledger, monkeypatch):
    src = drop(facility_config, GOOD, os.urandom(1 << 20))
    [acq] = scan(facility_config, ledger).ready
    real_read = col._resume_prefix

    def grow_then_resume(s, tmp):
        with open(src, "ab") as f:
            f.write(b"more data arriving")
        return real_read(s, tmp)

    monkeypatch.setattr(col, "_resume_prefix", grow_then_resume)
    with pytest.raises(NotReady, match="changed"):
        collect(facility_config, ledger, acq)
    dest = destination(facility_config, acq)
    assert not dest.exists() and not list(dest.parent.glob(".*partial*"))
    assert ledger.stage_states(acq.uid)["collect"].state == "failed"


def test_completion_marker(facility_config, ledger):
    facility_config.landing_zones[0].completion_marker = ".done"
    src = drop(facility_config, GOOD, b"abc")
    assert scan(facility_config, ledger).ready == []
    Path(str(src) + ".done").write_text("")
    assert len(scan(facility_config, ledger).ready) == 1


def test_zero_byte_file_is_quarantined_with_reason(facility_config, ledger):
    src = drop(facility_config, GOOD, b"")
    [acq] = scan(facility_config, ledger).ready
    assert collect(facility_config, ledger, acq) == "quarantined"
    ds = ledger.require(acq.uid)
    assert ds.state == "quarantined" and "empty file" in ds.reason
    assert src.exists()
    reason = facility_config.storage.quarantine / acq.microscope / (GOOD + ".reason.json")
    assert "empty file" in reason.read_text()
    assert ledger.stage_states(acq.uid)["collect"].error.startswith("empty file")


def test_same_name_different_content_same_experiment_is_quarantined(facility_config, ledger):
    facility_config.landing_zones[0].tree = "name"  # both files map to TNT/MicroAlgue/2024-05-02/
    drop(facility_config, f"pc1/{GOOD}", b"first acquisition")
    drop(facility_config, f"pc2/{GOOD}", b"different pixels")
    first, second = scan(facility_config, ledger).ready
    assert collect(facility_config, ledger, first) == "collected"
    assert collect(facility_config, ledger, second) == "quarantined"
    ds = ledger.require(second.uid)
    assert "name collision" in ds.reason
    assert Path(ledger.require(first.uid).raw_path).read_bytes() == b"first acquisition"  # kept
    q = facility_config.storage.quarantine / second.microscope / "pc2" / GOOD
    assert q.read_bytes() == b"different pixels"  # and so is the new one
    assert ledger.require(first.uid).state == "collected"


def test_file_rewritten_after_collection_is_a_new_acquisition(facility_config, ledger):
    drop(facility_config, GOOD, b"first")
    [a] = scan(facility_config, ledger).ready
    collect(facility_config, ledger, a)
    drop(facility_config, GOOD, b"rewritten", age=1800)
    [b] = scan(facility_config, ledger).ready
    assert b.uid != a.uid
    assert collect(facility_config, ledger, b) == "quarantined"  # it would overwrite the raw copy
    assert ledger.require(a.uid).state == "collected"


def test_interrupted_copy_resumes(facility_config, ledger, monkeypatch):
    data = os.urandom(20 << 20)
    drop(facility_config, GOOD, data)
    [acq] = scan(facility_config, ledger).ready
    dest = destination(facility_config, acq)
    partial = dest.with_name(f".{dest.name}.partial-{acq.uid}")
    partial.parent.mkdir(parents=True)
    partial.write_bytes(data[: 9 << 20])  # what a crashed copy left behind
    assert collect(facility_config, ledger, acq) == "collected"
    assert dest.read_bytes() == data and not partial.exists()


def test_corrupt_partial_is_restarted(facility_config, ledger):
    data = os.urandom(1 << 20)
    drop(facility_config, GOOD, data)
    [acq] = scan(facility_config, ledger).ready
    dest = destination(facility_config, acq)
    dest.parent.mkdir(parents=True)
    dest.with_name(f".{dest.name}.partial-{acq.uid}").write_bytes(b"garbage" * 100)
    collect(facility_config, ledger, acq)
    assert digest_file(dest).sha256 == ledger.require(acq.uid).sha256 == digest_file(
        facility_config.landing_zones[0].path / GOOD).sha256


def test_destination_full_is_a_clear_retryable_error(facility_config, ledger, monkeypatch):
    drop(facility_config, GOOD, os.urandom(1 << 20))
    [acq] = scan(facility_config, ledger).ready
    real_open = open

    class FullDisk:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

        def write(self, _):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, k):
            return getattr(self.f, k)

    def fake_open(path, mode="r", *a, **kw):
        f = real_open(path, mode, *a, **kw)
        return FullDisk(f) if ".partial-" in str(path) and "w" in mode or "a" in mode and ".partial-" in str(path) else f

    monkeypatch.setattr("builtins.open", fake_open)
    with pytest.raises(DestinationFull, match="ran out of space"):
        collect(facility_config, ledger, acq)
    monkeypatch.undo()
    assert not destination(facility_config, acq).exists()
    ev = ledger.stage_states(acq.uid)["collect"]
    assert ev.state == "failed" and "DestinationFull" in ev.error
    # space is back: the retry completes
    assert collect(facility_config, ledger, acq) == "collected"


def test_preflight_refuses_when_not_enough_space(facility_config, ledger, monkeypatch):
    drop(facility_config, GOOD, os.urandom(1000))
    [acq] = scan(facility_config, ledger).ready
    monkeypatch.setattr(col.shutil, "disk_usage", lambda p: type("U", (), {"free": 10})())
    with pytest.raises(DestinationFull, match="10 bytes free"):
        collect(facility_config, ledger, acq)


def test_hidden_partial_and_sidecar_files_are_not_acquisitions(facility_config, ledger):
    drop(facility_config, ".hidden.czi", b"x")
    drop(facility_config, "a.czi.part", b"x")
    drop(facility_config, GOOD + ".meta.yaml", b"study: {}")
    assert scan(facility_config, ledger).ready == []


def test_sidecar_travels_with_its_acquisition(facility_config, ledger):
    drop(facility_config, GOOD, b"pixels")
    drop(facility_config, GOOD + ".meta.yaml", b"study:\n  title: x\n")
    [acq] = scan(facility_config, ledger).ready
    collect(facility_config, ledger, acq)
    roles = {f.role for f in ledger.files(acq.uid)}
    assert roles == {"raw", "sidecar"}
