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
    assert f"already holds another acquisition's file (uid {first.uid})" in ds.reason
    assert ds.raw_path is None  # the loser claims nothing
    assert Path(ledger.require(first.uid).raw_path).read_bytes() == b"first acquisition"  # kept
    q = facility_config.storage.quarantine / second.microscope / "pc2" / GOOD
    assert q.read_bytes() == b"different pixels"  # and so is the new one
    assert ledger.require(first.uid).state == "collected"


def test_file_rewritten_after_collection_is_a_new_version_not_a_collision(facility_config, ledger):
    drop(facility_config, GOOD, b"first")
    [a] = scan(facility_config, ledger).ready
    assert collect(facility_config, ledger, a) == "collected"
    drop(facility_config, GOOD, b"rewritten", age=1800)
    [b] = scan(facility_config, ledger).ready
    assert b.uid != a.uid
    assert collect(facility_config, ledger, b) == "collected"
    old, new = ledger.require(a.uid), ledger.require(b.uid)
    assert (old.version, new.version) == (1, 2)
    assert old.state == "superseded" and old.superseded_by == b.uid and "version 2" in old.reason
    assert Path(old.raw_path).read_bytes() == b"first"  # the earlier version stays in the raw tree
    assert Path(new.raw_path).read_bytes() == b"rewritten"
    assert Path(new.raw_path).name == GOOD.replace(".czi", ".v2.czi")
    assert Path(new.raw_path).parent == Path(old.raw_path).parent
    assert ledger.events(b.uid, "collect")[-1].details["supersedes"] == a.uid
    assert scan(facility_config, ledger).ready == []  # and neither is offered again


def test_interrupted_copy_resumes_and_copies_only_the_rest(facility_config, ledger, monkeypatch):
    data = os.urandom(20 << 20)
    drop(facility_config, GOOD, data)
    [acq] = scan(facility_config, ledger).ready
    dest = destination(facility_config, acq)
    partial = dest.with_name(f".{dest.name}.partial-{acq.uid}")
    partial.parent.mkdir(parents=True)
    kept = 9 << 20
    partial.write_bytes(data[:kept])  # what a crashed copy left behind
    written = []
    partial_fds: set[int] = set()
    real_open, real_pwrite = os.open, os.pwrite

    def counting_open(path, flags, *a, **kw):
        fd = real_open(path, flags, *a, **kw)
        if ".partial-" in str(path) and flags & (os.O_WRONLY | os.O_RDWR):
            partial_fds.add(fd)
        return fd

    def counting_pwrite(fd, data, offset):
        n = real_pwrite(fd, data, offset)
        if fd in partial_fds:
            written.append(n)
        return n

    monkeypatch.setattr(os, "open", counting_open)
    monkeypatch.setattr(os, "pwrite", counting_pwrite)
    assert collect(facility_config, ledger, acq) == "collected"
    monkeypatch.undo()
    assert dest.read_bytes() == data and not partial.exists()
    assert sum(written) == len(data) - kept  # only the missing part was copied
    details = ledger.events(acq.uid, "collect")[-1].details
    assert (details["resumed_at"], details["bytes_written"]) == (kept, len(data) - kept)


def test_raw_copy_is_verified_before_it_has_its_final_name(facility_config, ledger, monkeypatch):
    import microfair.transfer as transfer

    data = os.urandom(50 << 20)  # several chunks: most ranges are read back while the copy goes on
    drop(facility_config, GOOD, data)
    [acq] = scan(facility_config, ledger).ready
    dest = destination(facility_config, acq)
    seen = []
    real = transfer.read_back

    def spy(fd, lo, hi, hasher, **kw):
        seen.append((lo, hi, dest.exists(), Path(os.readlink(f"/proc/self/fd/{fd}")).name))
        return real(fd, lo, hi, hasher, **kw)

    monkeypatch.setattr(transfer, "read_back", spy)
    assert collect(facility_config, ledger, acq) == "collected"
    assert seen and not any(exists for _, _, exists, _ in seen)  # every read-back happened before publication
    assert all(name.startswith(f".{dest.name}.partial-") for *_, name in seen)
    ranges = sorted((lo, hi) for lo, hi, *_ in seen if hi > lo)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(data)  # the whole file, in contiguous ranges
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    assert len(ranges) > 1  # read back during the copy, not only after it


def test_a_copy_that_reads_back_wrong_never_reaches_the_final_name(facility_config, ledger, monkeypatch):
    import microfair.transfer as transfer

    drop(facility_config, GOOD, os.urandom(1 << 20))
    [acq] = scan(facility_config, ledger).ready
    monkeypatch.setattr(transfer, "read_back", lambda fd, lo, hi, hasher, **kw: hasher.update(b"\0" * (hi - lo)))
    with pytest.raises(col.CollectError, match="verification failed"):
        collect(facility_config, ledger, acq)
    dest = destination(facility_config, acq)
    assert not dest.exists() and not list(dest.parent.glob(".*partial*"))


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
    partial_fds: set[int] = set()
    real_open = os.open

    def tracking_open(path, flags, *a, **kw):
        fd = real_open(path, flags, *a, **kw)
        if ".partial-" in str(path) and flags & (os.O_WRONLY | os.O_RDWR):
            partial_fds.add(fd)
        return fd

    def full_pwrite(fd, data, offset):
        if fd in partial_fds:
            raise OSError(errno.ENOSPC, "No space left on device")
        return os.write(fd, data)

    monkeypatch.setattr(os, "open", tracking_open)
    monkeypatch.setattr(os, "pwrite", full_pwrite)
    with pytest.raises(DestinationFull, match="ran out of space"):
        collect(facility_config, ledger, acq)
    monkeypatch.undo()
    dest = destination(facility_config, acq)
    assert not dest.exists()
    # a full disk leaves nothing behind: no partial copy holding the space that ran out
    assert not [p for p in dest.parent.iterdir() if ".partial-" in p.name] if dest.parent.exists() else True
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


def test_growing_file_is_collected_once_complete_after_it_stops(facility_config, ledger):
    """Appended every 0.3 s, stability 0.5 s: never ready while it grows; once quiet, collected whole.

    The scans run on an explicit clock (``now``), so the test does not depend on how fast the machine is.
    """
    zone = facility_config.landing_zones[0]
    zone.stability_seconds = 0.5
    src = drop(facility_config, GOOD, b"", age=0)
    t = time.time()
    for i in range(12):
        with open(src, "ab") as f:
            f.write(os.urandom(4096))
        res = scan(facility_config, ledger, now=t)
        assert res.ready == [], f"taken while still growing (append {i})"
        assert "waiting until unchanged" in res.waiting[0].why
        t += 0.3
    whole = src.read_bytes()
    assert scan(facility_config, ledger, now=t).ready == []  # unchanged, but only for 0.3 s
    [acq] = scan(facility_config, ledger, now=t + 0.3).ready  # 0.6 s >= 0.5 s: quiescent
    assert collect(facility_config, ledger, acq) == "collected"
    ds = ledger.require(acq.uid)
    assert Path(ds.raw_path).read_bytes() == whole and ds.size_bytes == len(whole) == 12 * 4096
    assert len(ledger.datasets()) == 1 and ds.version == 1  # one dataset, no versions, no collisions
    assert scan(facility_config, ledger, now=t + 5).ready == []


def test_quiescence_is_measured_across_separate_scans_and_ledger_connections(facility_config):
    from microfair.ledger import Ledger

    facility_config.landing_zones[0].stability_seconds = 60
    drop(facility_config, GOOD, b"pixels")
    t = time.time()
    assert scan(facility_config, Ledger.from_config(facility_config), now=t).ready == []
    assert scan(facility_config, Ledger.from_config(facility_config), now=t + 59).ready == []
    assert len(scan(facility_config, Ledger.from_config(facility_config), now=t + 61).ready) == 1


def test_scan_takes_its_own_second_look_when_stability_is_short(facility_config, ledger):
    facility_config.landing_zones[0].stability_seconds = 0.2
    drop(facility_config, GOOD, b"pixels")
    assert len(scan(facility_config, ledger).ready) == 1
    assert len(scan(facility_config, ledger, settle_up_to=0).ready) == 1  # the first look is in the ledger


def test_an_unfinished_pipeline_is_offered_again_and_reuses_the_raw_copy(facility_config, ledger):
    drop(facility_config, GOOD, b"pixels")
    [acq] = scan(facility_config, ledger).ready
    assert collect(facility_config, ledger, acq) == "collected"
    raw = Path(ledger.require(acq.uid).raw_path)
    inode = raw.stat().st_ino
    assert scan(facility_config, ledger).ready == []  # collected, nothing failed yet: not offered
    with ledger.stage(acq.uid, "validate"):
        pass
    with pytest.raises(RuntimeError):
        with ledger.stage(acq.uid, "convert"):
            raise RuntimeError("worker killed")
    [again] = scan(facility_config, ledger).ready
    assert again.uid == acq.uid
    assert collect(facility_config, ledger, again) == "collected"
    ev = ledger.events(acq.uid, "collect")[-1]
    assert ev.details["reused"] is True and ev.details["bytes_written"] == 0
    assert raw.stat().st_ino == inode and len(ledger.files(acq.uid, "raw")) == 1
    # a stage that is running is not offered twice, and a quarantined dataset never again
    ledger.start_event(acq.uid, "convert")
    assert scan(facility_config, ledger).ready == []
    ledger.update(acq.uid, state="quarantined")
    with pytest.raises(RuntimeError):
        with ledger.stage(acq.uid, "convert"):
            raise RuntimeError("again")
    assert scan(facility_config, ledger).ready == []


def test_re_running_validate_after_a_failed_validation_works(facility_config, ledger, monkeypatch):
    from microfair import ingest

    drop(facility_config, GOOD, b"pixels")
    [acq] = scan(facility_config, ledger).ready
    collect(facility_config, ledger, acq)
    import microfair.imaging as imaging

    def boom(_):
        raise OSError("NFS went away")

    monkeypatch.setattr(imaging, "open_image", boom)
    with pytest.raises(OSError):
        ingest.validate_dataset(facility_config, ledger, acq.uid)
    [again] = scan(facility_config, ledger).ready
    assert collect(facility_config, ledger, again) == "collected"
    monkeypatch.undo()
    # the real reader now runs (the bytes are no image: quarantined with the reader's reason, not a state error)
    assert ingest.validate_dataset(facility_config, ledger, acq.uid) == "quarantined"


def _second_zone(cfg, name="scope-2"):
    from microfair.config import LandingZone

    zone = LandingZone(microscope=name, path=cfg.landing_zones[0].path.parent / name, stability_seconds=0,
                       tree=cfg.landing_zones[0].tree)
    zone.path.mkdir(parents=True, exist_ok=True)
    cfg.landing_zones.append(zone)
    return zone


def test_same_raw_path_from_two_microscopes_never_shares_a_raw_copy_or_sidecar(facility_config, ledger):
    other = _second_zone(facility_config)
    for zone, who in ((facility_config.landing_zones[0], "Lebon"), (other, "Curie")):
        p = zone.path / "TNT/Algae/exp1" / GOOD
        p.parent.mkdir(parents=True)
        p.write_bytes(b"identical pixels")
        p.with_name(GOOD + ".meta.yaml").write_text(f"study:\n  title: by {who}\n")
    first, second = scan(facility_config, ledger).ready
    assert collect(facility_config, ledger, first) == "collected"
    assert collect(facility_config, ledger, second) == "quarantined"
    a, b = ledger.require(first.uid), ledger.require(second.uid)
    assert b.raw_path is None and f"uid {first.uid}" in b.reason
    assert ledger.files(second.uid, "sidecar") == []  # not the first depositor's sidecar row
    [side] = ledger.files(first.uid, "sidecar")
    assert "by Lebon" in Path(side.path).read_text()
    assert (facility_config.storage.quarantine / "scope-2/TNT/Algae/exp1" / GOOD).read_bytes() == b"identical pixels"


def test_name_too_long_for_the_file_system_is_quarantined_not_retried(facility_config, ledger, monkeypatch):
    drop(facility_config, GOOD, b"pixels")
    [acq] = scan(facility_config, ledger).ready
    real = os.open

    def too_long(path, *a, **kw):
        if ".partial-" in str(path):
            raise OSError(errno.ENAMETOOLONG, "File name too long", str(path))
        return real(path, *a, **kw)

    monkeypatch.setattr(col.os, "open", too_long)
    assert collect(facility_config, ledger, acq) == "quarantined"
    monkeypatch.undo()
    ds = ledger.require(acq.uid)
    assert ds.state == "quarantined" and "file name too long" in ds.reason
    assert scan(facility_config, ledger).ready == []  # never offered again


def test_a_226_byte_name_is_quarantined_with_the_reason(facility_config, ledger):
    name = "2024-05-02_TNT_" + "a" * 207 + ".czi"
    assert len(name.encode()) == 226
    drop(facility_config, name, b"pixels")
    [acq] = scan(facility_config, ledger).ready
    assert collect(facility_config, ledger, acq) == "quarantined"
    ds = ledger.require(acq.uid)
    assert "226 bytes long" in ds.reason and ds.project is None
    [q] = ledger.files(acq.uid, "quarantine")
    assert Path(q.path).read_bytes() == b"pixels"
    assert scan(facility_config, ledger).ready == []


def test_quarantine_on_a_full_disk_is_retryable_and_leaves_no_partial(facility_config, ledger, monkeypatch):
    import microfair.quarantine as qmod

    drop(facility_config, GOOD, b"")  # an empty file goes to quarantine
    [acq] = scan(facility_config, ledger).ready

    def full(src, dst):
        Path(dst).write_bytes(b"x" * 1000)  # some bytes made it before the disk filled up
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(qmod.shutil, "copyfile", full)
    with pytest.raises(qmod.QuarantineError, match="ran out of space.*retry") as err:
        collect(facility_config, ledger, acq)
    assert err.value.retryable
    monkeypatch.undo()
    assert [p for p in facility_config.storage.quarantine.rglob("*") if p.is_file()] == []
    assert ledger.require(acq.uid).state == "discovered"
    [again] = scan(facility_config, ledger).ready  # the next run tries again
    assert collect(facility_config, ledger, again) == "quarantined"


def test_a_crash_between_publication_and_the_ledger_is_resumed_not_a_collision(facility_config, ledger, monkeypatch):
    drop(facility_config, GOOD, b"pixels")
    drop(facility_config, GOOD + ".meta.yaml", b"study:\n  title: x\n")
    [acq] = scan(facility_config, ledger).ready
    real = ledger.add_file

    def crash(*a, **kw):
        raise SystemExit("worker killed")

    monkeypatch.setattr(ledger, "add_file", crash)
    with pytest.raises(SystemExit):
        collect(facility_config, ledger, acq)
    dest = destination(facility_config, acq)
    assert dest.read_bytes() == b"pixels"  # published (verified) before the crash
    monkeypatch.setattr(ledger, "add_file", real)
    [again] = scan(facility_config, ledger).ready
    assert collect(facility_config, ledger, again) == "collected"
    ds = ledger.require(acq.uid)
    assert ds.raw_path == str(dest) and ds.sha256 == digest_file(dest).sha256
    assert {f.role for f in ledger.files(acq.uid)} == {"raw", "sidecar"}
