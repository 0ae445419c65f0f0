"""Benchmark: microfair.convert vs ome-zarr-py ``write_image`` vs ngff-zarr ``to_ngff_zarr``, at equal work.

Input (default): a 16-bit OME-TIFF written in 512 x 512 tiles, 2 channels x 32 planes of 2048 x 4096
(1.07 GB). ``--size-gb 4`` makes 128 planes (4.3 GB); ``--planes N`` keeps the size and changes the plane count.

Table 1, equal work. Every contender reads the same ``bioio.BioImage(src, chunk_dims=["Y", "X"])`` (one
plane per dask chunk), writes NGFF 0.5 / Zarr v3 with the same levels (level 0 + 3 halvings), the same
512 x 512 chunks in the same shards (microfair's shard shape for ``conversion.shard_target_bytes``), zstd
level 3, every scene, and downsamples with a 2 x 2 mean: ome-zarr-py ``method=Methods.LOCAL_MEAN`` (its
default ``resize`` is an anti-aliased scikit-image resize, far more work), ngff-zarr
``Methods.ITKWASM_BIN_SHRINK``. microfair also computes its QC report in the same pass; the peers do not.

Table 2, defaults. microfair ``open_image`` + ``ConversionSettings()``; each peer with its own defaults
(pyramid method, levels, chunks, codec, format) on the same plane-chunked input.

Each contender runs in a subprocess of its own; its peak RSS is that process's VmHWM (``ru_maxrss`` from
``os.wait4`` is kept in the JSON, but it starts from the parent's RSS at fork).
The machine's limits are measured in the same run: disk read (the source, after
``posix_fadvise(DONTNEED)``), disk write (1 GiB, fsync), zstd-3 on all cores (numcodecs, threads).
"Limit" is the slowest of the three, in MB/s of input, counting the extra the smaller levels add.

The peers are not runtime dependencies of microfair: ome-zarr (0.16) is in the venv for tests; ngff-zarr
and itkwasm-downsample were installed into the venv for this benchmark only (``uv pip install ngff-zarr
itkwasm-downsample``); a missing peer is reported and skipped.

    .venv/bin/python benchmarks/convert.py [--input 1gb|4gb | --size-gb 1 --planes 32] [--rounds 2]
        [--only microfair microfair-zarr-python ome-zarr-py ngff-zarr] [--tables equal defaults] [--timeout 600]
        [--workdir /tmp/microfair-bench]

"microfair" runs as deployed (the plane engine, zarrs writing and reading back); "microfair-zarr-python" with
zarr-python's own codec pipeline for both (``--only microfair-zarr-python``). With ``--rounds N`` the contenders run
interleaved (microfair, peer, microfair, peer ...), every other round in reverse, and the ratios are taken
within a round: on a shared machine, read the CPU seconds beside the wall time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CHUNK = 512
LEVELS = 4  # level 0 + 3 halvings
MIN_LEVEL = 256
ZSTD = 3


def source_shape(size_gb: float, planes: int | None) -> tuple[int, int, int, int]:
    """(C, Z, Y, X) of the input: 2 x 32 x 2048 x 4096 per GiB; ``planes`` fixes Z and shrinks the plane."""
    total = size_gb * 2**30 / 2  # uint16 pixels
    if planes is None:
        planes = max(1, round(total / (2 * 2048 * 4096)))
        return 2, planes, 2048, 4096
    plane = total / (2 * planes)
    y = 2048 if plane >= 2048 * 1024 else 1024
    x = max(CHUNK, round(plane / y / CHUNK) * CHUNK)
    return 2, planes, y, x


def make_source(path: Path, shape: tuple[int, int, int, int]) -> Path:
    """A tiled (512 x 512) uint16 OME-TIFF of textured planes with noise (not compressible to nothing)."""
    import tifffile

    from microfair.synthetic import textured_stack

    c, z, y, x = shape
    base = textured_stack((4, y, x), seed=1)
    rng = np.random.default_rng(2)

    def tiles():  # with ``tile=``, tifffile takes an iterator of tiles, plane by plane, row by row
        for i in range(c * z):
            plane = np.roll(base[i % 4], 37 * i, axis=1) ^ rng.integers(0, 64, (y, x), dtype=np.uint16)
            for ty in range(0, y, CHUNK):
                for tx in range(0, x, CHUNK):
                    yield plane[ty:ty + CHUNK, tx:tx + CHUNK]

    tmp = path.with_suffix(".part")
    big = math.prod(shape) * 2 >= 2**31  # classic TIFF offsets end at 4 GiB
    tifffile.imwrite(tmp, tiles(), shape=shape, dtype=np.uint16, ome=True, tile=(CHUNK, CHUNK), bigtiff=big,
                     metadata={"axes": "CZYX", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.2}, photometric="minisblack")
    tmp.rename(path)
    return path


def plane_image(src: str):
    import bioio

    return bioio.BioImage(src, chunk_dims=["Y", "X"])


def scene_arrays(img) -> list:
    from microfair.convert.source import scene_source

    return [scene_source(img, i).data for i in range(len(img.scenes))]


def equal_settings():
    from microfair.config.core import ConversionSettings

    return ConversionSettings(chunk_xy=CHUNK, max_levels=LEVELS, min_level_size=MIN_LEVEL, compression_level=ZSTD)


def shard_shapes(data) -> list[tuple[int, ...]]:
    """microfair's shard shape for every level of ``data`` (what the peers are given too)."""
    from microfair.convert.layout import shard_shape
    from microfair.convert.pyramid import level_shapes

    s = equal_settings()
    shapes = level_shapes(data.shape, min_level_size=s.min_level_size, max_levels=s.max_levels)
    chunks = [level_chunks(sh) for sh in shapes]
    return [shard_shape(sh, ch, data.dtype, s.shard_target_bytes) for sh, ch in zip(shapes, chunks)]


def level_chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(max(1, min(c, n)) for c, n in zip((1, 1, 1, CHUNK, CHUNK), shape))


# --------------------------------------------------------------------------- contenders (run in the child)


def mf_equal(src: str, out: Path) -> dict:
    from microfair.convert import convert_to_zarr

    r = convert_to_zarr(plane_image(src), out, settings=equal_settings(), ome_xml=None)
    return {"levels": len(r.scenes[0].levels), "qc_passed": r.qc.passed}


def mf_defaults(src: str, out: Path) -> dict:
    from microfair.config.core import ConversionSettings
    from microfair.convert import convert_to_zarr
    from microfair.imaging import open_image

    r = convert_to_zarr(open_image(src), out, settings=ConversionSettings(), ome_xml=None)
    return {"levels": len(r.scenes[0].levels), "qc_passed": r.qc.passed}


def oz_run(src: str, out: Path, equal: bool) -> dict:
    import zarr
    from ome_zarr.format import FormatV05
    from ome_zarr.scale import Methods
    from ome_zarr.writer import write_image

    root = zarr.open_group(str(out), mode="w", zarr_format=3)
    n = 0
    for i, data in enumerate(scene_arrays(plane_image(src))):
        if equal:
            shards = shard_shapes(data)
            n = len(shards)
            opts = [{"chunks": tuple(min(c, s) for c, s in zip(level_chunks(data.shape), sh)), "shards": sh,
                     "compressors": [zarr.codecs.ZstdCodec(level=ZSTD)]} for sh in shards]
            write_image(data, root.create_group(str(i)), scale_factors=[2**k for k in range(1, n)], fmt=FormatV05(),
                        axes="tczyx", method=Methods.LOCAL_MEAN, storage_options=opts)
        else:
            write_image(data, root.create_group(str(i)), axes="tczyx")
    if not equal:
        n = len(list(zarr.open_group(str(out / "0"), mode="r").array_keys()))
    return {"levels": n}


def nz_run(src: str, out: Path, equal: bool) -> dict:
    import ngff_zarr as nz
    import zarr

    n = 0
    for i, data in enumerate(scene_arrays(plane_image(src))):
        image = nz.to_ngff_image(data, dims=["t", "c", "z", "y", "x"],
                                 scale={"t": 1.0, "c": 1.0, "z": 1.0, "y": 0.2, "x": 0.2})
        if equal:
            shards = shard_shapes(data)
            n = len(shards)
            ms = nz.to_multiscales(image, scale_factors=[2**k for k in range(1, n)],
                                   method=nz.Methods.ITKWASM_BIN_SHRINK,
                                   chunks={"t": 1, "c": 1, "z": 1, "y": CHUNK, "x": CHUNK})
            per = {"t": 1, "c": 1, "z": 1, "y": shards[0][3] // CHUNK, "x": shards[0][4] // CHUNK}
            nz.to_ngff_zarr(str(out / str(i)), ms, version="0.5", chunks_per_shard=per,
                            compressors=[zarr.codecs.ZstdCodec(level=ZSTD)])
        else:
            ms = nz.to_multiscales(image)
            nz.to_ngff_zarr(str(out / str(i)), ms)
            n = len(ms.images)
    return {"levels": n}


CONTENDERS = {
    "equal": {"microfair": mf_equal, "microfair-zarr-python": mf_equal,
              "ome-zarr-py": lambda s, o: oz_run(s, o, True), "ngff-zarr": lambda s, o: nz_run(s, o, True)},
    "defaults": {"microfair": mf_defaults, "microfair-zarr-python": mf_defaults,
                 "ome-zarr-py": lambda s, o: oz_run(s, o, False), "ngff-zarr": lambda s, o: nz_run(s, o, False)},
}
PEERS = ("ome-zarr-py", "ngff-zarr")


def child_env(name: str) -> dict[str, str]:
    """microfair as it runs by default (the zarrs codec pipeline, the plane engine), or with zarr-python's own
    pipeline for the writes and the read-back ("microfair-zarr-python"); the peers as they come."""
    env = dict(os.environ)
    for key in ("MICROFAIR_ZARR_PIPELINE", "MICROFAIR_PROOF_PIPELINE"):
        env.pop(key, None)
    if name == "microfair-zarr-python":
        env["MICROFAIR_ZARR_PIPELINE"] = "zarr"
        env["MICROFAIR_PROOF_PIPELINE"] = "zarr-python"
    return env


def run_order(names: list[str], rounds: int) -> list[tuple[int, str]]:
    """(round, contender): microfair's variants and the peers interleaved, every other round reversed, so that a
    change in the machine's load falls on both sides."""
    ours = [n for n in names if n.startswith("microfair")]
    peers = [n for n in names if not n.startswith("microfair")]
    mixed: list[str] = []
    for i in range(max(len(ours), len(peers))):
        mixed += ours[i:i + 1] + peers[i:i + 1]
    return [(r, n) for r in range(rounds) for n in (mixed if r % 2 == 0 else mixed[::-1])]


def child(table: str, name: str, src: str, out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    extra = CONTENDERS[table][name](src, out)
    seconds = time.perf_counter() - t0
    hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) / 1024
    print(json.dumps({"seconds": seconds, "vm_hwm_mb": hwm, **extra}, default=str))


# --------------------------------------------------------------------------- machine limits


def disk_read(src: Path) -> float:
    """MB/s reading ``src`` in 16 MiB pieces after dropping it from the page cache (where the kernel lets us)."""
    fd = os.open(src, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        t0 = time.perf_counter()
        n = 0
        while chunk := os.read(fd, 16 << 20):
            n += len(chunk)
        return n / 1e6 / (time.perf_counter() - t0)
    finally:
        os.close(fd)


def disk_write(workdir: Path) -> float:
    blob = np.random.default_rng(0).integers(0, 255, 64 << 20, dtype=np.uint8).tobytes()
    target = workdir / "write-test.bin"
    t0 = time.perf_counter()
    with open(target, "wb") as f:
        for _ in range(16):
            f.write(blob)
        f.flush()
        os.fsync(f.fileno())
    seconds = time.perf_counter() - t0
    target.unlink()
    return 16 * len(blob) / 1e6 / seconds


def zstd_limit(src: Path) -> dict:
    """zstd-3 on 512 x 512 chunks of this data on all cores (numcodecs releases the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    import tifffile
    from numcodecs import Zstd

    with tifffile.TiffFile(src) as tif:
        plane = tif.pages[0].asarray()
    chunks = [np.ascontiguousarray(plane[y:y + CHUNK, x:x + CHUNK]) for y in range(0, plane.shape[0], CHUNK)
              for x in range(0, plane.shape[1], CHUNK)] * 4
    codec = Zstd(level=ZSTD)
    cores = os.cpu_count() or 1
    t0 = time.perf_counter()
    with ThreadPoolExecutor(cores) as pool:
        sizes = list(pool.map(lambda c: len(codec.encode(c)), chunks))
    seconds = time.perf_counter() - t0
    raw = sum(c.nbytes for c in chunks)
    return {"zstd_mb_s": raw / 1e6 / seconds, "zstd_ratio": raw / sum(sizes), "cores": cores}


# --------------------------------------------------------------------------- driver


def run_child(table: str, name: str, src: Path, out: Path, timeout: float) -> dict:
    """One contender in its own process: wall time, its peak RSS (ru_maxrss from wait4), files and bytes."""
    cmd = [sys.executable, __file__, "--child", table, name, str(src), str(out)]
    with open(out.parent / f"{name}.log", "w+") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=child_env(name))
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                return {"failed": f"timed out after {timeout:.0f} s"}
            time.sleep(0.2)
        stdout = proc.stdout.read() if proc.stdout else ""
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            log.seek(0)
            return {"failed": log.read()[-1500:].strip().splitlines()[-1:] or [f"exit {proc.returncode}"]}
    r = json.loads(stdout.strip().splitlines()[-1])
    # VmHWM of the child itself: its ru_maxrss (wait4) starts from the parent's RSS at fork, so it is only
    # the same figure when the parent is smaller than the child
    r["peak_rss_mb"] = r["vm_hwm_mb"]
    r["ru_maxrss_mb"] = usage.ru_maxrss / 1024
    r["cpu_s"] = usage.ru_utime + usage.ru_stime  # of the child, all its threads (what a loaded machine cannot hide)
    files = [f for f in out.rglob("*") if f.is_file()]
    r["files"] = len(files)
    r["written_mb"] = sum(f.stat().st_size for f in files) / 1e6
    return r


def table(label: str, kind: str, src: Path, args: argparse.Namespace, limit: float, size_mb: float) -> dict:
    """Every contender, ``args.rounds`` times in the interleaved order of :func:`run_order`; ratios within a round."""
    print(f"\n### {label}", flush=True)
    results: dict[int, dict[str, dict]] = {}
    for rnd, name in run_order(args.only, args.rounds):
        out = args.workdir / f"{kind}-{name}.ome.zarr"
        load = os.getloadavg()[0]
        r = run_child(kind, name, src, out, args.timeout)
        shutil.rmtree(out, ignore_errors=True)
        r["load"] = f"{load:.1f}-{os.getloadavg()[0]:.1f}"
        results.setdefault(rnd, {})[name] = r
        if "failed" in r:
            print(f"round {rnd + 1} {name}: FAILED: {r['failed']}", flush=True)
        else:
            r["mb_s"] = size_mb / r["seconds"]
            print(f"round {rnd + 1} {name}: {r['seconds']:.1f} s, {r['cpu_s']:.0f} CPU s, {r['peak_rss_mb']:.0f} MB "
                  f"(load {r['load']})", flush=True)
    print("| round | contender | load | s | MB/s | vs ome-zarr-py | vs ngff-zarr | of limit | CPU s | CPU vs "
          "ome-zarr-py | peak RSS MB | files/GB | written MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for rnd, row in results.items():
        ok = {n: r for n, r in row.items() if "failed" not in r}
        for name, r in ok.items():
            ratios = [f"{r['mb_s'] / ok[p]['mb_s']:.2f}x" if p in ok and p != name else "–" for p in PEERS]
            cpu = f"{ok['ome-zarr-py']['cpu_s'] / r['cpu_s']:.2f}x" if "ome-zarr-py" in ok and name != "ome-zarr-py" \
                else "–"
            print(f"| {rnd + 1} | {name} | {r['load']} | {r['seconds']:.1f} | {r['mb_s']:.1f} | {ratios[0]} | "
                  f"{ratios[1]} | {r['mb_s'] / limit:.0%} | {r['cpu_s']:.0f} | {cpu} | {r['peak_rss_mb']:.0f} | "
                  f"{r['files'] / (size_mb / 1e3):.0f} | {r['written_mb']:.0f} |", flush=True)
        peers = [ok[p] for p in PEERS if p in ok]
        for name in (n for n in ok if n.startswith("microfair")):
            ours = ok[name]
            if peers:
                fastest = max(peers, key=lambda p: p["mb_s"])
                print(f"round {rnd + 1} targets, {name}: {ours['mb_s'] / fastest['mb_s']:.2f}x the faster peer by wall "
                      f"time, {min(p['cpu_s'] for p in peers) / ours['cpu_s']:.2f}x by CPU s (target 1.5x); "
                      f"{ours['mb_s'] / limit:.0%} of the limit (target 50 %, aim 70 %); peak RSS "
                      f"{ours['peak_rss_mb']:.0f} MB vs the leaner peer's "
                      f"{min(p['peak_rss_mb'] for p in peers):.0f} MB",
                      flush=True)
    return {str(k): v for k, v in results.items()}


INPUTS = {"1gb": (1.0, None), "4gb": (4.0, None)}  # 4gb: 2 channels x 128 planes of 2048 x 4096


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", choices=sorted(INPUTS), default=None,
                    help="1gb: 2 x 32 x 2048 x 4096 (1.07 GB); 4gb: 2 x 128 x 2048 x 4096 (4.3 GB, 128-plane stack)")
    ap.add_argument("--size-gb", type=float, default=1.0, help="input size in GiB (default 1: 2 x 32 x 2048 x 4096)")
    ap.add_argument("--rounds", type=int, default=1, help="run every contender this many times, interleaved")
    ap.add_argument("--planes", type=int, default=None, help="Z planes (the plane shrinks to keep the size)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/microfair-bench"))
    ap.add_argument("--only", nargs="*", default=["microfair", *PEERS],
                    choices=["microfair", "microfair-zarr-python", *PEERS])
    ap.add_argument("--tables", nargs="*", default=["equal", "defaults"], choices=["equal", "defaults"])
    ap.add_argument("--timeout", type=float, default=600, help="seconds per contender before it is reported as failed")
    ap.add_argument("--child", nargs=4, metavar=("TABLE", "NAME", "SRC", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.child[2], Path(args.child[3]))
        return 0
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.input:
        args.size_gb, args.planes = INPUTS[args.input]
    shape = source_shape(args.size_gb, args.planes)
    src = args.workdir / f"source-{'x'.join(map(str, shape))}.ome.tiff"
    if not src.exists():
        print(f"writing {src} ...", flush=True)
        make_source(src, shape)
    size_mb = math.prod(shape) * 2 / 1e6
    from microfair.convert.pyramid import level_shapes

    shapes = level_shapes((1, *shape), min_level_size=MIN_LEVEL, max_levels=LEVELS)
    factor = sum(math.prod(s) for s in shapes) / math.prod(shapes[0])
    limits = {"disk_read_mb_s": disk_read(src), "disk_write_mb_s": disk_write(args.workdir), **zstd_limit(src)}
    budget = {"disk read": limits["disk_read_mb_s"], "zstd-3 on all cores": limits["zstd_mb_s"] / factor,
              "disk write": limits["disk_write_mb_s"] * limits["zstd_ratio"] / factor}
    limit_name, limit = min(budget.items(), key=lambda kv: kv[1])
    print(f"## input {src.name}: {size_mb:.0f} MB of uint16 pixels (C x Z x Y x X = {' x '.join(map(str, shape))}, "
          f"512 x 512 tiles), {len(shapes)} levels (+{factor - 1:.0%})")
    print(f"machine: disk read {limits['disk_read_mb_s']:.0f} MB/s, disk write {limits['disk_write_mb_s']:.0f} MB/s "
          f"(fsync), zstd-{ZSTD} {limits['zstd_mb_s']:.0f} MB/s on {limits['cores']} core(s) (ratio "
          f"{limits['zstd_ratio']:.2f}); limit {limit:.0f} MB/s of input ({limit_name}); load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    out = {"limits": limits, "limit": [limit_name, limit], "input": list(shape)}
    if "equal" in args.tables:
        out["equal"] = table("equal work (plane chunks, 4 levels, 512² chunks in the same shards, zstd-3, 2x2 mean)",
                             "equal", src, args, limit, size_mb)
    if "defaults" in args.tables:
        out["defaults"] = table("each at its defaults (same plane-chunked input)", "defaults", src, args, limit, size_mb)
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
