"""Which Zarr writer for the conversion engine: zarr-python, zarr-python + zarrs, or tensorstore.

The same work for each: 2 channels x N planes of 2048 x 4096 uint16 (textured, made once in memory)
written as Zarr v3 with 512 x 512 chunks in 2048 x 4096 shards (one shard per plane, what
``conversion.shard_target_bytes`` = 16 MiB gives), zstd level 3, one task per shard on a thread pool of
``cores`` threads. Each writer runs in its own process; printed: seconds, MB/s, CPU seconds per GB, peak RSS.

zarrs and tensorstore are not dependencies of microfair; to measure them install them beside the venv,
e.g. ``uv pip install --target /tmp/zsite --no-deps zarrs tensorstore`` and run with
``PYTHONPATH=/tmp/zsite``.

    .venv/bin/python benchmarks/convert_writers.py [--planes 8] [--workdir /tmp/microfair-writers]
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

Y, X, CHUNK = 2048, 4096, 512


def planes(n: int) -> np.ndarray:
    from microfair.synthetic import textured_stack

    base = textured_stack((2, Y, X), seed=1)
    rng = np.random.default_rng(2)
    out = np.empty((1, 2, n, Y, X), dtype=np.uint16)
    for c in range(2):
        for z in range(n):
            out[0, c, z] = np.roll(base[c], 37 * z, axis=1) ^ rng.integers(0, 64, (Y, X), dtype=np.uint16)
    return out


def blocks(shape):
    return [(c, z) for c in range(shape[1]) for z in range(shape[2])]


def write_zarr(data: np.ndarray, out: Path, pipeline: str | None) -> None:
    import zarr

    if pipeline:
        zarr.config.set({"codec_pipeline.path": pipeline})
    arr = zarr.create_array(str(out), shape=data.shape, chunks=(1, 1, 1, CHUNK, CHUNK), shards=(1, 1, 1, Y, X),
                            dtype=data.dtype, compressors=[zarr.codecs.ZstdCodec(level=3)], zarr_format=3)

    def one(cz):
        c, z = cz
        arr[0, c, z] = data[0, c, z]

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(one, blocks(data.shape)))


def write_tensorstore(data: np.ndarray, out: Path) -> None:
    import tensorstore as ts

    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(out)},
            "metadata": {"shape": list(data.shape), "data_type": "uint16",
                         "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1, 1, 1, Y, X]}},
                         "codecs": [{"name": "sharding_indexed", "configuration": {
                             "chunk_shape": [1, 1, 1, CHUNK, CHUNK],
                             "codecs": [{"name": "bytes", "configuration": {"endian": "little"}},
                                        {"name": "zstd", "configuration": {"level": 3, "checksum": False}}],
                             "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}},
                                              {"name": "crc32c"}]}}]},
            "create": True, "delete_existing": True}
    arr = ts.open(spec).result()
    futures = [arr[0, c, z].write(data[0, c, z]) for c, z in blocks(data.shape)]
    for f in futures:
        f.result()


WRITERS = {
    "zarr-python (threads)": lambda d, o: write_zarr(d, o, None),
    "zarr-python + zarrs": lambda d, o: write_zarr(d, o, "zarrs.ZarrsCodecPipeline"),
    "tensorstore": write_tensorstore,
}


def child(name: str, n: int, out: Path) -> None:
    data = planes(n)
    shutil.rmtree(out, ignore_errors=True)
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    WRITERS[name](data, out)
    seconds = time.perf_counter() - t0
    files = sum(1 for f in out.rglob("*") if f.is_file())
    hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) / 1024
    print(json.dumps({"seconds": seconds, "cpu": time.process_time() - cpu0, "mb": data.nbytes / 1e6,
                      "files": files, "peak_mb": hwm, "data_mb": data.nbytes / 2**20}))
    shutil.rmtree(out, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--planes", type=int, default=8)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/microfair-writers"))
    ap.add_argument("--child", nargs=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.child:
        child(args.child[0], args.planes, args.workdir / "out.zarr")
        return 0
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}; {os.cpu_count()} core(s)")
    print("| writer | s | MB/s | CPU s per GB | peak RSS MB (data in memory) | files |\n|---|---|---|---|---|---|")
    for name in WRITERS:
        proc = subprocess.run([sys.executable, __file__, "--planes", str(args.planes), "--workdir", str(args.workdir),
                               "--child", name], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(f"| {name} | failed: {proc.stderr.strip().splitlines()[-1:]} |||||", flush=True)
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"| {name} | {r['seconds']:.2f} | {r['mb'] / r['seconds']:.0f} | {r['cpu'] / r['mb'] * 1e3:.1f} | "
              f"{r['peak_mb']:.0f} ({r['data_mb']:.0f}) | {r['files']} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
