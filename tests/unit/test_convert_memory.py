"""Memory does not grow with the stack: the same plane size with 16 or 128 planes peaks within 25 %.

The files are OME-TIFFs made on the fly; bioio-ome-tiff hands out one chunk per whole Z stack by default,
so this also checks that the conversion re-reads such files one plane per chunk. Each conversion runs in
a fresh process (``open_image`` + ``convert_to_zarr``), which reports its own peak RSS (VmHWM).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

LIMIT_MB = 1024
PLANE = 1024

CHILD = """
import json, sys
from pathlib import Path
from microfair.config.core import ConversionSettings
from microfair.convert import convert_to_zarr
from microfair.imaging import open_image
img = open_image(sys.argv[1])
chunks = img.get_image_dask_data("TCZYX").chunksize
result = convert_to_zarr(img, Path(sys.argv[2]), ome_xml=None,
                         settings=ConversionSettings(memory_limit_mb=int(sys.argv[3]), max_levels=3))
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
print(json.dumps({"peak_mb": hwm, "reader_chunks": chunks, "levels": len(result.scenes[0].levels),
                  "mb": result.source_bytes / 1e6}))
"""


def make_stack(path: Path, planes: int) -> Path:
    rng = np.random.default_rng(planes)
    base = rng.integers(100, 4000, (PLANE, PLANE), dtype=np.uint16)

    def gen():
        for z in range(planes):
            yield np.roll(base, 7 * z, axis=1)

    tifffile.imwrite(path, gen(), shape=(planes, PLANE, PLANE), dtype=np.uint16, ome=True,
                     metadata={"axes": "ZYX"}, photometric="minisblack")
    return path


def peak_of_conversion(tmp_path: Path, planes: int) -> dict:
    src = make_stack(tmp_path / f"z{planes}.ome.tiff", planes)
    proc = subprocess.run([sys.executable, "-c", CHILD, str(src), str(tmp_path / f"z{planes}.ome.zarr"), str(LIMIT_MB)],
                          capture_output=True, text=True, check=False, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_stack(tmp_path):
    few = peak_of_conversion(tmp_path, 16)  # 32 MiB of pixels
    many = peak_of_conversion(tmp_path, 128)  # 256 MiB of pixels (bioio-ome-tiff would give one 256 MiB chunk)
    assert many["reader_chunks"][2] == 1  # open_image hands out plane chunks
    assert many["mb"] == pytest.approx(8 * few["mb"])
    print(f"peak RSS: 16 planes {few['peak_mb']:.0f} MB, 128 planes {many['peak_mb']:.0f} MB")
    assert many["peak_mb"] < 1.25 * few["peak_mb"], (few, many)
    assert many["peak_mb"] < LIMIT_MB and few["peak_mb"] < LIMIT_MB


def test_a_reader_giving_whole_stacks_is_read_one_plane_per_chunk(tmp_path):
    """bioio-ome-tiff opened with its defaults (one chunk per ZYX stack): the conversion source is re-read
    with plane chunks, and the pixels are the same."""
    import bioio

    from microfair.convert.source import scene_source

    src = tmp_path / "stack.ome.tiff"
    data = np.random.default_rng(1).integers(0, 4000, (2, 6, 64, 48), dtype=np.uint16)
    tifffile.imwrite(src, data, ome=True, metadata={"axes": "CZYX"}, photometric="minisblack")
    img = bioio.BioImage(src)
    assert img.get_image_dask_data("TCZYX").chunksize[2] == 6
    source = scene_source(img, 0)
    assert source.data.chunksize == (1, 1, 1, 64, 48)
    np.testing.assert_array_equal(source.data.compute()[0], data)
