"""Benchmark: microfair.convert vs ome-zarr-py ``write_image`` vs ngff-zarr ``to_ngff_zarr``.

Same work for all three: the same bioio image and dask chunks (the synthetic 16-bit textured
OME-TIFF, T=1, C=2, Z=n, 2048 x 2048, is read with plane chunks), written as NGFF 0.5 / Zarr v3
with the same pyramid depth, 512 x 512 chunks and zstd level 3, every scene. Each contender runs in its own subprocess (peak RSS
is that process's). microfair also computes its QC in the same pass; the peers do not.
Also measured: raw disk read and write speed, and zstd throughput on this data (the limits).

    MICROFAIR_TESTDATA=/work/shared/testdata .venv/bin/python benchmarks/convert.py [--size-mb 1024]
        [--large-gb 8] [--only microfair ome-zarr-py ngff-zarr] [--workdir /tmp/bench]

Inputs: the synthetic OME-TIFF, the CZI and LIF samples in $MICROFAIR_TESTDATA, and with --large-gb a
synthetic source made chunk by chunk on the fly (microfair.convert.synthetic_source; no file).
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
MIN_LEVEL = CHUNK // 2  # no level below 256 x 256


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


def source_image(src: str, plane_chunks: bool):
    """The image every contender reads: the same bioio reader and dask chunks for all three."""
    if src.startswith("synthetic:"):
        from microfair.convert.synthetic_source import shape_for_bytes, synthetic_image

        return synthetic_image(shape_for_bytes(int(float(src.split(":", 1)[1]) * 2**30)), chunk_xy=2048)
    if plane_chunks:  # one plane per chunk (bioio-ome-tiff would hand out whole Z stacks)
        import bioio

        return bioio.BioImage(src, chunk_dims=["Y", "X"])
    from microfair.imaging import open_image

    return open_image(src)


def scene_arrays(img):
    """(T, C, Z, Y, X) dask array of every scene (the peers convert each scene, as microfair does)."""
    from microfair.convert.source import scene_source

    return [scene_source(img, i).data for i in range(len(img.scenes))]


def settings_for(levels: int):
    from microfair.config.core import ConversionSettings

    return ConversionSettings(chunk_xy=CHUNK, max_levels=levels, min_level_size=MIN_LEVEL, compression_level=3)


def scene_levels(data, levels: int) -> int:
    """The depth microfair gives this scene (the peers are given the same)."""
    from microfair.convert.pyramid import level_shapes

    return len(level_shapes(data.shape, min_level_size=MIN_LEVEL, max_levels=levels))


def run_microfair(img, out: Path, levels: int) -> dict:
    from microfair.convert import convert_to_zarr

    result = convert_to_zarr(img, out, settings=settings_for(levels), ome_xml=None)
    return {"qc_passed": result.qc.passed, "levels": [len(s.levels) for s in result.scenes]}


def run_ome_zarr(img, out: Path, levels: int) -> dict:
    import zarr
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_image

    root = zarr.open_group(str(out), mode="w", zarr_format=3)
    for i, data in enumerate(scene_arrays(img)):
        n = scene_levels(data, levels)
        write_image(data, root.create_group(str(i)), scale_factors=[2**k for k in range(1, n)], fmt=FormatV05(),
                    axes="tczyx", storage_options={"chunks": (1, 1, 1, CHUNK, CHUNK),
                                                   "compressors": [zarr.codecs.ZstdCodec(level=3)]})
    return {}


def run_ngff_zarr(img, out: Path, levels: int) -> dict:
    import ngff_zarr as nz
    import zarr

    for i, data in enumerate(scene_arrays(img)):
        image = nz.to_ngff_image(data, dims=["t", "c", "z", "y", "x"],
                                 scale={"t": 1, "c": 1, "z": 1, "y": 0.2, "x": 0.2})
        ms = nz.to_multiscales(image, scale_factors=[2**k for k in range(1, scene_levels(data, levels))],
                               chunks={"t": 1, "c": 1, "z": 1, "y": CHUNK, "x": CHUNK})
        nz.to_ngff_zarr(str(out / str(i)), ms, version="0.5", compressors=[zarr.codecs.ZstdCodec(level=3)])
    return {}


CONTENDERS = {"microfair": run_microfair, "ome-zarr-py": run_ome_zarr, "ngff-zarr": run_ngff_zarr}
PEERS = ("ome-zarr-py", "ngff-zarr")


def levels_for(src: str, plane_chunks: bool) -> tuple[int, int, float]:
    """Pyramid depth for this input (halve Y/X down to ~CHUNK/2, at most LEVELS), source bytes, level factor."""
    from microfair.convert.pyramid import level_shapes

    arrays = scene_arrays(source_image(src, plane_chunks))
    biggest = max(arrays, key=lambda a: a.shape[-1] * a.shape[-2])
    shapes = level_shapes(biggest.shape, min_level_size=MIN_LEVEL, max_levels=LEVELS)
    factor = sum(np.prod(s) for s in shapes) / np.prod(shapes[0])
    return len(shapes), sum(int(a.nbytes) for a in arrays), float(factor)


def child(name: str, src: str, out: Path, levels: int, plane_chunks: bool) -> None:
    shutil.rmtree(out, ignore_errors=True)
    img = source_image(src, plane_chunks)
    t0 = time.perf_counter()
    extra = CONTENDERS[name](img, out, levels)
    seconds = time.perf_counter() - t0
    print(json.dumps({"name": name, "seconds": seconds, "peak_rss_mb": peak_rss_mb(), **extra}))


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited from the parent across exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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


def run_input(label: str, src: str, plane_chunks: bool, args: argparse.Namespace, limits: dict) -> dict:
    """Every contender on one input, each in its own process; prints one table."""
    levels, source_bytes, factor = levels_for(src, plane_chunks)
    size_mb = source_bytes / 1e6
    # the work's limit, in MB/s of input: reading it, compressing level 0 + the smaller levels, writing that
    budget = {"disk read": limits["disk_read_mb_s"], "zstd (all cores)": limits["zstd_mb_s"] / factor,
              "disk write": limits["disk_write_mb_s"] * limits["zstd_ratio"] / factor}
    limit_name, limit = min(budget.items(), key=lambda kv: kv[1])
    print(f"\n## {label}: {size_mb:.0f} MB of pixels, {levels} level(s); limit {limit:.0f} MB/s of input "
          f"({limit_name}; levels add {factor - 1:.0%})", flush=True)
    results: dict[str, dict] = {}
    for name in args.only:
        out = args.workdir / f"{name}.ome.zarr"
        cmd = [sys.executable, __file__, "--child", name, src, str(out), str(levels), str(int(plane_chunks))]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(f"{name}: FAILED\n{proc.stderr[-2000:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        r["mb_s"] = size_mb / r["seconds"]
        r["written_mb"] = dir_size(out) / 1e6
        results[name] = r
        shutil.rmtree(out, ignore_errors=True)
    print(f"| contender | s | MB/s | vs ome-zarr-py | vs ngff-zarr | of limit | peak RSS MB | written MB |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        ratios = [f"{r['mb_s'] / results[p]['mb_s']:.2f}x" if p in results and p != name else "–" for p in PEERS]
        print(f"| {name} | {r['seconds']:.1f} | {r['mb_s']:.1f} | {ratios[0]} | {ratios[1]} | "
              f"{r['mb_s'] / limit:.0%} | {r['peak_rss_mb']:.0f} | {r['written_mb']:.0f} |", flush=True)
    ours, peers = results.get("microfair"), [results[p] for p in PEERS if p in results]
    if ours and peers:
        fastest, leanest = max(p["mb_s"] for p in peers), min(p["peak_rss_mb"] for p in peers)
        print(f"targets: speed {ours['mb_s'] / fastest:.2f}x the faster peer (target 1.5x); "
              f"{ours['mb_s'] / limit:.0%} of the limit (target 70%); "
              f"memory {ours['peak_rss_mb']:.0f} MB vs the leaner peer's {leanest:.0f} MB")
    return {"label": label, "source_mb": size_mb, "levels": levels, "limit_mb_s": limit, "limit": limit_name,
            "results": results}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=1024, help="synthetic OME-TIFF size (0: skip it)")
    ap.add_argument("--large-gb", type=float, default=0,
                    help="also convert a synthetic source of this many GiB made on the fly (no file)")
    ap.add_argument("--samples", type=Path, default=os.environ.get("MICROFAIR_TESTDATA"),
                    help="folder with the CZI and LIF samples (default $MICROFAIR_TESTDATA)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/microfair-bench"))
    ap.add_argument("--only", nargs="*", default=list(CONTENDERS))
    ap.add_argument("--child", nargs=5, metavar=("NAME", "SRC", "OUT", "LEVELS", "PLANES"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], Path(args.child[2]), int(args.child[3]), args.child[4] == "1")
        return 0
    args.workdir.mkdir(parents=True, exist_ok=True)
    inputs: list[tuple[str, str, bool]] = []
    src = args.workdir / f"source-{max(args.size_mb, 64)}mb.ome.tiff"
    if not src.exists():
        print(f"writing {src} ...", flush=True)
        make_source(src, max(args.size_mb, 64))
    if args.size_mb:
        inputs.append((f"synthetic 16-bit OME-TIFF {src.name}", str(src), True))
    if args.samples and Path(args.samples).is_dir():
        for sample in sorted(Path(args.samples).iterdir()):
            if sample.suffix.lower() in (".czi", ".lif"):  # the benchmark's choice of inputs, not a reader choice
                inputs.append((f"sample {sample.name}", str(sample), False))
    if args.large_gb:
        inputs.append((f"synthetic {args.large_gb:g} GiB made on the fly", f"synthetic:{args.large_gb}", False))
    limits = {**disk_limits(src, args.workdir), **zstd_limit(src)}
    print(f"limits: disk read {limits['disk_read_mb_s']:.0f} MB/s (page cache likely), disk write "
          f"{limits['disk_write_mb_s']:.0f} MB/s (fsync), zstd-3 {limits['zstd_mb_s']:.0f} MB/s on "
          f"{limits['cores']} core(s) (ratio {limits['zstd_ratio']:.2f}); load {os.getloadavg()[0]:.1f}")
    tables = [run_input(label, source, planes, args, limits) for label, source, planes in inputs]
    print(json.dumps({"limits": limits, "inputs": tables}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
