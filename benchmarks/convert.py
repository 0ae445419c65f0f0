"""Benchmark: microfair.convert vs ome-zarr-py ``write_image`` vs ngff-zarr ``to_ngff_zarr``.

Same work for all three: a synthetic 16-bit textured OME-TIFF (T=1, C=2, Z=n, 2048 x 2048),
read through bioio with plane chunks, written as NGFF 0.5 / Zarr v3 with the same pyramid
depth, 512 x 512 chunks and zstd level 3. Each contender runs in its own subprocess (peak RSS
is that process's). microfair also computes its QC in the same pass; the peers do not.
Also measured: raw disk read and write speed, and zstd throughput on this data (the limits).

    .venv/bin/python benchmarks/convert.py [--size-mb 1024] [--workdir /tmp/bench]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PLANE = 2048
CHUNK = 512
LEVELS = 4  # level 0 + 3 halvings: 2048 -> 256


def make_source(path: Path, size_mb: int) -> Path:
    import tifffile

    from microfair.synthetic import textured_stack

    z = max(1, round(size_mb * 2**20 / (2 * PLANE * PLANE * 2)))
    base = textured_stack((4, PLANE, PLANE), seed=1)
    rng = np.random.default_rng(2)

    def planes():
        for i in range(2 * z):
            plane = np.roll(base[i % 4], 37 * i, axis=1)
            yield (plane ^ rng.integers(0, 64, plane.shape, dtype=np.uint16))

    tifffile.imwrite(path, planes(), shape=(2, z, PLANE, PLANE), dtype=np.uint16, ome=True,
                     metadata={"axes": "CZYX", "PhysicalSizeX": 0.2, "PhysicalSizeY": 0.2}, photometric="minisblack")
    return path


def source_array(src: Path):
    import bioio

    img = bioio.BioImage(src, chunk_dims=["Y", "X"])
    return img, img.get_image_dask_data("TCZYX")


def run_microfair(src: Path, out: Path) -> dict:
    from microfair.config.core import ConversionSettings
    from microfair.convert import convert_to_zarr

    img, _ = source_array(src)
    settings = ConversionSettings(chunk_xy=CHUNK, max_levels=LEVELS, min_level_size=256, compression_level=3)
    result = convert_to_zarr(img, out, settings=settings, ome_xml=None)
    return {"qc_passed": result.qc.passed}


def run_ome_zarr(src: Path, out: Path) -> dict:
    import zarr
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_image

    _, data = source_array(src)
    group = zarr.open_group(str(out), mode="w", zarr_format=3)
    write_image(data, group, scale_factors=[2**i for i in range(1, LEVELS)], fmt=FormatV05(), axes="tczyx",
                storage_options={"chunks": (1, 1, 1, CHUNK, CHUNK), "compressors": [zarr.codecs.ZstdCodec(level=3)]})
    return {}


def run_ngff_zarr(src: Path, out: Path) -> dict:
    import ngff_zarr as nz
    import zarr

    _, data = source_array(src)
    image = nz.to_ngff_image(data, dims=["t", "c", "z", "y", "x"], scale={"t": 1, "c": 1, "z": 1, "y": 0.2, "x": 0.2})
    ms = nz.to_multiscales(image, scale_factors=[2**i for i in range(1, LEVELS)],
                           chunks={"t": 1, "c": 1, "z": 1, "y": CHUNK, "x": CHUNK})
    nz.to_ngff_zarr(str(out), ms, version="0.5", compressors=[zarr.codecs.ZstdCodec(level=3)])
    return {}


CONTENDERS = {"microfair": run_microfair, "ome-zarr-py": run_ome_zarr, "ngff-zarr": run_ngff_zarr}


def child(name: str, src: Path, out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    extra = CONTENDERS[name](src, out)
    seconds = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"name": name, "seconds": seconds, "peak_rss_mb": rss_mb, **extra}))


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def disk_limits(src: Path, workdir: Path) -> dict:
    # read: the file in 64 MiB pieces (page cache may make this memory speed; said so in the output)
    t0 = time.perf_counter()
    with open(src, "rb", buffering=0) as f:
        while f.read(64 << 20):
            pass
    read = src.stat().st_size / 1e6 / (time.perf_counter() - t0)
    # write: 512 MiB with fsync
    blob = np.random.default_rng(0).integers(0, 255, 64 << 20, dtype=np.uint8).tobytes()
    target = workdir / "write-test.bin"
    t0 = time.perf_counter()
    with open(target, "wb") as f:
        for _ in range(8):
            f.write(blob)
        f.flush()
        os.fsync(f.fileno())
    write = 8 * len(blob) / 1e6 / (time.perf_counter() - t0)
    target.unlink()
    return {"disk_read_mb_s": read, "disk_write_mb_s": write}


def zstd_limit(src: Path) -> dict:
    """zstd level 3 on 512 x 512 uint16 chunks of this data, all cores (numcodecs releases the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    import tifffile
    from numcodecs import Zstd

    with tifffile.TiffFile(src) as tif:
        plane = tif.pages[0].asarray()
    chunks = [np.ascontiguousarray(plane[y:y + CHUNK, x:x + CHUNK]) for y in range(0, PLANE, CHUNK)
              for x in range(0, PLANE, CHUNK)] * 8
    codec = Zstd(level=3)
    cores = os.cpu_count() or 1
    t0 = time.perf_counter()
    with ThreadPoolExecutor(cores) as pool:
        sizes = list(pool.map(lambda c: len(codec.encode(c)), chunks))
    seconds = time.perf_counter() - t0
    raw = sum(c.nbytes for c in chunks)
    return {"zstd_mb_s": raw / 1e6 / seconds, "zstd_ratio": raw / sum(sizes), "cores": cores}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/microfair-bench"))
    ap.add_argument("--only", nargs="*", default=list(CONTENDERS))
    ap.add_argument("--child", nargs=3, metavar=("NAME", "SRC", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return 0
    args.workdir.mkdir(parents=True, exist_ok=True)
    src = args.workdir / f"source-{args.size_mb}mb.ome.tiff"
    if not src.exists():
        print(f"writing {src} ...", flush=True)
        make_source(src, args.size_mb)
    size_mb = src.stat().st_size / 1e6
    limits = {**disk_limits(src, args.workdir), **zstd_limit(src)}
    print(f"source {size_mb:.0f} MB; limits: disk read {limits['disk_read_mb_s']:.0f} MB/s (page cache likely), "
          f"disk write {limits['disk_write_mb_s']:.0f} MB/s, zstd-3 {limits['zstd_mb_s']:.0f} MB/s on "
          f"{limits['cores']} core(s) (ratio {limits['zstd_ratio']:.2f})")
    results = {}
    for name in args.only:
        out = args.workdir / f"{name}.ome.zarr"
        proc = subprocess.run([sys.executable, __file__, "--child", name, str(src), str(out)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(f"{name}: FAILED\n{proc.stderr[-2000:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        r["mb_s"] = size_mb / r["seconds"]
        r["written_mb"] = dir_size(out) / 1e6
        results[name] = r
        shutil.rmtree(out, ignore_errors=True)
        print(f"{name:12s} {r['seconds']:7.1f} s  {r['mb_s']:7.1f} MB/s  peak RSS {r['peak_rss_mb']:6.0f} MB  "
              f"written {r['written_mb']:.0f} MB", flush=True)
    ours = results.get("microfair")
    if ours:
        for peer in ("ome-zarr-py", "ngff-zarr"):
            if peer in results:
                print(f"ratio microfair / {peer}: {ours['mb_s'] / results[peer]['mb_s']:.2f}x")
        budget = min(limits["zstd_mb_s"], limits["disk_write_mb_s"] * limits["zstd_ratio"])
        print(f"microfair at {ours['mb_s'] / budget:.0%} of the compressor/disk limit ({budget:.0f} MB/s of input)")
    print(json.dumps({"limits": limits, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
