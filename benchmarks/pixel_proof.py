"""What the pixel-exact proof costs: one conversion with every plane read back, one with a sample, one without.

    python benchmarks/pixel_proof.py [--planes 16] [--size 2048] [--repeat 1]

The input is a synthetic uint16 acquisition (1 x 2 x planes x size x size, made when read, no disk), converted at
the default settings (NGFF 0.5, sharded). "without" replaces the source digests by a constant and skips the read-back
(the conversion without the proof); it is for this measurement only. Wall time and CPU time of this process
(threads included) are printed per variant, alternating the variants on each repeat.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import dask.array as da
import numpy as np

import microfair.convert.writer as writer
from microfair.config.core import ConversionSettings
from microfair.convert.proof import PixelProof
from microfair.convert.synthetic_source import synthetic_image


def run(shape: tuple[int, ...], settings: ConversionSettings, out: Path) -> tuple[float, float, str]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = writer.convert_to_zarr(synthetic_image(shape, seed=7), out, settings=settings, ome_xml=None)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    shutil.rmtree(out)
    return wall, cpu, (result.extra.get("pixel_proof") or {}).get("verified", "no proof")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--planes", type=int, default=16)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    shape = (1, 2, args.planes, args.size, args.size)
    mb = np.prod(shape) * 2 / 1e6
    real_graph, real_verify = writer.tile_digest_graph, PixelProof.verify

    def without(enable: bool) -> None:
        if enable:
            writer.tile_digest_graph = lambda level0, tile: da.zeros(  # type: ignore[assignment]
                (*level0.shape[:3], -(-level0.shape[3] // tile), -(-level0.shape[4] // tile), 32), dtype=np.uint8,
                chunks=(*level0.chunks[:3], -1, -1, -1))
            PixelProof.verify = lambda self, compute=None: {}  # type: ignore[assignment]
        else:
            writer.tile_digest_graph, PixelProof.verify = real_graph, real_verify

    variants = [("proof, every plane", dict(verify_planes="all"), False),
                ("proof, 2 planes per scene", dict(verify_planes=2), False),
                ("without the proof", {}, True)]
    print(f"input {shape} uint16, {mb:.0f} MB, NGFF 0.5 sharded, default settings")
    print(f"{'variant':28s} {'wall s':>8s} {'CPU s':>8s} {'MB/s':>7s}  verdict")
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeat):
            for name, kw, off in variants:
                without(off)
                try:
                    wall, cpu, verdict = run(shape, ConversionSettings(**kw), Path(tmp) / "b.ome.zarr")
                finally:
                    without(False)
                print(f"{name:28s} {wall:8.1f} {cpu:8.1f} {mb / wall:7.0f}  {verdict}", flush=True)


if __name__ == "__main__":
    main()
