"""Benchmark: collect's verified copy against ``rsync -a`` and ``cp``, on one file of at least 2 GB.

microfair's copy (``microfair.collect.copy_verified``, what the collect stage runs) does more than the
peers: SHA-256 and BLAKE3 while copying, ``fsync``, a read-back of the temporary from the disk (page
cache dropped) compared with the BLAKE3, and an exclusive publication under the final name. The peers:

* at their defaults: ``rsync -a`` (whole-file checksum while receiving, no fsync) and ``cp``;
* with the same durability: ``rsync -a --fsync`` and ``cp`` + ``sync``, and ``cp`` + ``sync`` followed by
  an ``O_DIRECT`` read of the copy (the same three passes over the disk as microfair, without hashes);
* microfair's own buffered path (the fallback where O_DIRECT is refused: ``transfer.DIRECT = False``),
  and its previous loop (read, write, hash one after another, then fsync and read back), for the
  before/after figures.

Every contender runs in its own process, alternately, ``--runs`` times (the Python ones time their own
copy, without the interpreter's start and imports); the source is dropped from the
page cache before each run (``posix_fadvise DONTNEED``), so each reads it from the disk, and after each
run its output is deleted and everything is synced (untimed), so a contender that leaves dirty pages
behind (``rsync -a``, ``cp``) does not slow the next one down. Printed: median seconds and MB/s, the
ratio to ``rsync -a`` (> 1: faster than rsync), and peak RSS (GNU ``time``). The machine's limits are
measured in the same run: disk write (``dd conv=fsync`` buffered, ``dd oflag=direct``), read
(``dd iflag=direct``), a read and a write at once (two ``dd``: if the disk overlapped them, this would
take the longer of the two, not their sum), and the disk-only floor of a verified copy (``dd`` O_DIRECT copy, then an
O_DIRECT read of the copy: the same three passes over the disk, no hashing).

    .venv/bin/python benchmarks/collect.py [--size-gb 2] [--runs 3] [--workdir /var/tmp/microfair-collect]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MICROFAIR = """
import os, sys
sys.path.insert(0, {include!r})
from pathlib import Path
from microfair.collect import copy_verified
src, dest = Path({src!r}), Path({dest!r})
import time
st = src.stat()
t = time.perf_counter()
copy_verified(src, dest, tag="bench", expect_size=st.st_size, expect_mtime_ns=st.st_mtime_ns)
print("seconds=%.4f" % (time.perf_counter() - t))
"""

BUFFERED = MICROFAIR.replace("from microfair.collect import copy_verified",
                             "from microfair.collect import copy_verified\nimport microfair.transfer as tr\n"
                             "tr.DIRECT = False")

# The loop collect used before the overlapped engine (kept here only to measure the change).
PREVIOUS = """
import os, sys
sys.path.insert(0, {include!r})
import time
from microfair.checksum import CHUNK, StreamingDigest, blake3_file
t = time.perf_counter()
d = StreamingDigest()
with open({src!r}, "rb", buffering=0) as src, open({dest!r}, "wb") as out:
    while chunk := src.read(CHUNK):
        out.write(chunk)
        d.update(chunk)
    out.flush()
    os.fsync(out.fileno())
r = d.digest()
assert blake3_file({dest!r}, drop_cache=True) == r.blake3
print("seconds=%.4f" % (time.perf_counter() - t))
"""


def drop_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd) if os.access(path, os.W_OK) else None
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def run(cmd: list[str] | str, shell: bool = False) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of the command, from GNU time (``wait4`` in this process would
    report the forked Python's size for a command that is exec'd)."""
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"microfair-bench-rss-{os.getpid()}"
    if not Path("/usr/bin/time").exists():
        raise SystemExit("GNU time is needed for the peak memory column: apt-get install time")
    argv = ["/usr/bin/time", "-f", "%M", "-o", str(out)] + (["sh", "-c", cmd] if shell else list(cmd))
    t = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{cmd} failed: {proc.stderr.decode()[-2000:]}")
    # A Python contender times its own copy: the interpreter and microfair's imports (about 2-3 s here,
    # paid once per worker process by a collect task, not per file) are not the copy.
    own = [ln for ln in proc.stdout.decode().splitlines() if ln.startswith("seconds=")]
    if own:
        wall = float(own[-1].split("=", 1)[1])
    peak_kib = int(out.read_text().split()[-1])
    out.unlink()
    return wall, peak_kib * 1024


def make_source(path: Path, size: int) -> None:
    if path.exists() and path.stat().st_size == size:
        return
    block = os.urandom(64 << 20)  # incompressible, like most microscope data
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n
        f.flush()
        os.fsync(f.fileno())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-gb", type=float, default=2.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=Path("/var/tmp/microfair-collect"))
    args = ap.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    size = int(args.size_gb * (1 << 30))
    src = work / "source.bin"
    make_source(src, size)
    py, inc = sys.executable, str(ROOT / "include")

    def dest(name: str) -> Path:
        d = work / "out" / name
        shutil.rmtree(d.parent, ignore_errors=True)
        d.parent.mkdir(parents=True)
        return d

    def py_job(code: str, name: str) -> list[str]:
        return [py, "-c", code.format(include=inc, src=str(src), dest=str(dest(name)))]

    dd_copy = work / "out" / "ddc.bin"
    contenders = {
        "microfair copy_verified": lambda: py_job(MICROFAIR, "mf.bin"),
        "microfair buffered path": lambda: py_job(BUFFERED, "mfb.bin"),
        "rsync -a": lambda: ["rsync", "-a", str(src), str(dest("rs.bin"))],
        "cp": lambda: ["cp", str(src), str(dest("cp.bin"))],
        "rsync -a --fsync": lambda: ["rsync", "-a", "--fsync", str(src), str(dest("rsf.bin"))],
        "cp + sync": lambda: f"cp {src} {dest('cps.bin')} && sync {work / 'out' / 'cps.bin'}",
        "cp + sync + read back": lambda: (f"cp {src} {dest('cpr.bin')} && sync {work / 'out' / 'cpr.bin'} && "
                                          f"dd if={work / 'out' / 'cpr.bin'} of=/dev/null bs=32M iflag=direct "
                                          "status=none"),
        "microfair previous loop": lambda: py_job(PREVIOUS, "prev.bin"),
        "disk write: dd conv=fsync": lambda: ["dd", f"if={src}", f"of={dest('dd.bin')}", "bs=16M", "conv=fsync",
                                              "status=none"],
        "disk write: dd oflag=direct": lambda: ["dd", f"if={src}", f"of={dest('ddd.bin')}", "bs=32M",
                                                "oflag=direct", "conv=fsync", "status=none"],
        "disk read: dd iflag=direct": lambda: ["dd", f"if={src}", "of=/dev/null", "bs=16M", "iflag=direct",
                                               "status=none"],
        "disk read ‖ write: 2 dd at once": lambda: (
            f"dd if={src} of=/dev/null bs=32M iflag=direct status=none & "
            f"dd if=/dev/zero of={dest('ddz.bin')} bs=32M count={size >> 25} oflag=direct conv=fsync status=none; "
            "wait"),
        "3 passes: dd copy + read back": lambda: (
            f"dd if={src} of={dest('ddc.bin')} bs=32M iflag=direct oflag=direct conv=fsync status=none && "
            f"dd if={dd_copy} of=/dev/null bs=32M iflag=direct status=none"),
    }
    times: dict[str, list[float]] = {k: [] for k in contenders}
    rss: dict[str, int] = {k: 0 for k in contenders}
    for r in range(args.runs):
        for name, make in contenders.items():
            cmd = make()
            drop_cache(src)
            wall, peak = run(cmd, shell=isinstance(cmd, str))
            times[name].append(wall)
            rss[name] = max(rss[name], peak)
            print(f"  run {r + 1}: {name:32s} {wall:6.2f} s", file=sys.stderr, flush=True)
            shutil.rmtree(work / "out", ignore_errors=True)  # untimed: its output gone, its dirty pages on disk
            os.sync()
    med = {k: statistics.median(v) for k, v in times.items()}
    mb = size / 1e6
    ref = med["rsync -a"]
    load = os.getloadavg()[0]
    print(f"\nVerified copy of {size / (1 << 30):.1f} GiB, {args.runs} alternating runs (median), "
          f"{os.cpu_count()} cores, load {load:.1f}, {work}")
    for title, names in (("Peers at their defaults", ["microfair copy_verified", "rsync -a", "cp"]),
                         ("Same durability (fsync) for the peers", ["microfair copy_verified", "rsync -a --fsync",
                                                                     "cp + sync", "cp + sync + read back",
                                                                     "microfair buffered path",
                                                                     "microfair previous loop"]),
                         ("Machine limits, same run", ["disk write: dd conv=fsync", "disk write: dd oflag=direct",
                                                       "disk read: dd iflag=direct",
                                                       "disk read ‖ write: 2 dd at once",
                                                       "3 passes: dd copy + read back"])):
        print(f"\n{title}\n| contender | s | MB/s | speed vs rsync -a | peak RSS |\n|---|---|---|---|---|")
        for n in names:
            print(f"| {n} | {med[n]:.2f} | {mb / med[n]:.0f} | {ref / med[n]:.2f}× | {rss[n] / 2**20:.0f} MiB |")
    floor = med["3 passes: dd copy + read back"]
    print(f"\nmicrofair's verified copy reads the source, writes the copy and reads it back from the disk: "
          f"{floor / med['microfair copy_verified']:.0%} of the speed of the same three passes done by dd "
          f"(O_DIRECT, no hashing), {med['disk write: dd oflag=direct'] / med['microfair copy_verified']:.0%} "
          f"of the disk's O_DIRECT write speed.")


if __name__ == "__main__":
    main()
