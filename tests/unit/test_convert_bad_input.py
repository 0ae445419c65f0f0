"""Bad input ends one way: a ConversionError naming the dataset, the file and the cause; nothing at the
final path; and a re-run that succeeds (after the file is replaced by a good one, or plainly)."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import dask
import numpy as np
import pytest
import tifffile
import zarr

from microfair.config.core import ConversionSettings
from microfair.convert import ConversionError, convert_to_zarr, stale_temporaries
from microfair.convert.synthetic_source import TexturedVolume, synthetic_image
from microfair.imaging import open_image
from microfair.synthetic import textured_stack, write_ome_tiff

SETTINGS = ConversionSettings(chunk_xy=32, min_level_size=16, max_levels=4)


def level0(root: Path) -> np.ndarray:
    return np.asarray(zarr.open_group(str(root / "0"), mode="r")["0"][:])


def assert_nothing_published(out: Path) -> None:
    assert not out.exists()
    assert not stale_temporaries(out)


def test_ome_xml_declaring_more_planes_than_the_tiff_holds(tmp_path):
    data = textured_stack((2, 3, 64, 64), seed=21)
    src = write_ome_tiff(tmp_path / "stack.ome.tiff", data)
    xml = tifffile.TiffFile(src).ome_metadata
    assert 'SizeZ="3"' in xml
    tifffile.tiffcomment(src, xml.replace('SizeZ="3"', 'SizeZ="5"').encode("utf-8"))  # 10 planes said, 6 held
    img = open_image(src)  # opens: tifffile only warns, and would hand out zeros for the missing planes
    assert img.dims.Z == 5
    out = tmp_path / "conv" / "stack.ome.zarr"
    with pytest.raises(ConversionError) as err:
        convert_to_zarr(img, out, settings=SETTINGS, ome_xml=None, uid="MF-BAD-1")
    message = str(err.value)
    assert "MF-BAD-1" in message and "stack.ome.tiff" in message and "missing 4 frames" in message
    assert_nothing_published(out)

    write_ome_tiff(src, data)  # the facility replaces the file with a good copy
    result = convert_to_zarr(open_image(src), out, settings=SETTINGS, ome_xml=None, uid="MF-BAD-1")
    np.testing.assert_array_equal(level0(result.path)[0], data)
    assert not stale_temporaries(out)


def write_tiled(path: Path, data: np.ndarray) -> Path:
    tifffile.imwrite(path, data, ome=True, metadata={"axes": "CZYX"}, photometric="minisblack",
                     compression="zlib", tile=(32, 32))
    return path


def test_a_tile_that_fails_to_decode(tmp_path):
    data = textured_stack((2, 3, 96, 96), seed=22)
    src = write_tiled(tmp_path / "tiles.ome.tiff", data)
    with tifffile.TiffFile(src) as tif:
        page = tif.pages[1]  # C0 Z1: not in the last chunk, which open_image probes
        offset, count = page.dataoffsets[4], page.databytecounts[4]
    with open(src, "r+b") as f:
        f.seek(offset + 2)
        f.write(b"\xa5" * (count - 4))
    img = open_image(src)
    out = tmp_path / "tiles.ome.zarr"
    with pytest.raises(ConversionError) as err:
        convert_to_zarr(img, out, settings=SETTINGS, ome_xml=None, uid="MF-BAD-2")
    message = str(err.value)
    assert "MF-BAD-2" in message and "tiles.ome.tiff" in message
    assert "BAD_DATA" in message or "decompress" in message.lower() or "zlib" in message.lower()
    assert_nothing_published(out)

    write_tiled(src, data)
    result = convert_to_zarr(open_image(src), out, settings=SETTINGS, ome_xml=None, uid="MF-BAD-2")
    np.testing.assert_array_equal(level0(result.path)[0], data)


def slow_image(shape):
    """Reads take a while (50 ms a chunk), so that the workers are busy when one is killed."""
    return synthetic_image(shape, chunk_xy=256, tile=256, seed=3, latency=0.05), TexturedVolume(shape, tile=256, seed=3)


def kill_one_worker_when_chunks_appear(client, out: Path, killed: list[int]) -> threading.Thread:
    """SIGKILL one worker while it runs a conversion task (the scheduler says so), once the temporary exists.

    Asking the scheduler, not counting files, keeps the test independent of how many files a task writes
    (sharded levels are few files, written late).
    """
    pids = client.run(os.getpid)
    address, victim = sorted(pids.items(), key=lambda kv: kv[1])[0]

    def watch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            started = any(out.parent.glob(f".{out.name}.tmp-*"))
            busy = started and client.processing(workers=[address]).get(address)
            if busy:
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)
                return
            time.sleep(0.02)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
@pytest.mark.integration
def test_a_worker_killed_mid_conversion(tmp_path):
    """A dask worker process killed with SIGKILL while it converts: with ``allowed-failures: 0`` (fail
    fast) the conversion fails cleanly and a plain re-run succeeds; with dask's default retries the lost
    chunks are recomputed elsewhere and the result is identical."""
    from distributed import Client, LocalCluster

    shape = (1, 2, 4, 768, 768)
    settings = ConversionSettings(chunk_xy=256, min_level_size=96, max_levels=4)
    out = tmp_path / "killed.ome.zarr"
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                         dashboard_address=":0") as cluster, Client(cluster) as client:
        img, vol = slow_image(shape)
        killed: list[int] = []
        watcher = kill_one_worker_when_chunks_appear(client, out, killed)
        with pytest.raises(ConversionError) as err:
            convert_to_zarr(img, out, settings=settings, ome_xml=None, client=client, uid="MF-KILL-1")
        watcher.join(5)
        assert killed, "the worker was not killed during the conversion"
        message = str(err.value)
        assert "MF-KILL-1" in message and "KilledWorker" in message
        assert not out.exists()

        client.wait_for_workers(2, timeout=60)  # the nanny restarted the killed worker
        img, vol = slow_image(shape)
        result = convert_to_zarr(img, out, settings=settings, ome_xml=None, client=client, uid="MF-KILL-1")
        np.testing.assert_array_equal(level0(result.path), vol[:, :, :, :, :])
        assert not stale_temporaries(out)

    # default retries: dask recomputes the chunks of the killed worker; the pixels are the same
    again = tmp_path / "retried.ome.zarr"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        img, vol = slow_image(shape)
        killed = []
        watcher = kill_one_worker_when_chunks_appear(client, again, killed)
        result = convert_to_zarr(img, again, settings=settings, ome_xml=None, client=client, uid="MF-KILL-2")
        watcher.join(5)
        assert killed
        np.testing.assert_array_equal(level0(result.path), vol[:, :, :, :, :])
        for lvl in range(1, 4):
            a = zarr.open_group(str(again / "0"), mode="r")[str(lvl)][:]
            b = zarr.open_group(str(out / "0"), mode="r")[str(lvl)][:]
            np.testing.assert_array_equal(a, b)
    shutil.rmtree(again)


KILL_SCRIPT = """
import sys
from pathlib import Path
from microfair.config.core import ConversionSettings
from microfair.convert import convert_to_zarr
from microfair.convert.synthetic_source import synthetic_image
img = synthetic_image((1, 2, 6, 512, 512), chunk_xy=256, tile=256, seed=4, latency=0.1)
convert_to_zarr(img, Path(sys.argv[1]), settings=ConversionSettings(chunk_xy=128, min_level_size=64, max_levels=3,
                shard_target_bytes=2 * 128 * 128 * 2 * 2), ome_xml=None)
"""


def test_a_shard_half_written_when_the_process_dies(tmp_path):
    """SIGKILL while shards are being written (NGFF 0.5, sharded): nothing at the final path, the shard on disk
    is cut in half (as a write torn by the crash), and a re-run removes the temporary and converts it whole."""
    import subprocess
    import sys

    out = tmp_path / "sharded.ome.zarr"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(out)])
    shards: list[Path] = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        tmp = list(tmp_path.glob(f".{out.name}.tmp-*"))
        shards = [p for p in (tmp[0] / "0" / "0" / "c").rglob("*") if p.is_file()] if tmp else []
        if len(shards) >= 2:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, "the conversion ended before shards were written"
    assert not out.exists()
    (crashed,) = tmp_path.glob(f".{out.name}.tmp-*")
    torn = shards[0]
    torn.write_bytes(torn.read_bytes()[: torn.stat().st_size // 2])  # the crash tore this shard mid-write

    shape = (1, 2, 6, 512, 512)
    img = synthetic_image(shape, chunk_xy=256, tile=256, seed=4)
    settings = ConversionSettings(chunk_xy=128, min_level_size=64, max_levels=3, shard_target_bytes=2 * 128 * 128 * 2 * 2)
    result = convert_to_zarr(img, out, settings=settings, ome_xml=None)
    assert not crashed.exists() and not stale_temporaries(out)
    arr = zarr.open_group(str(out / "0"), mode="r")["0"]
    assert arr.shards == (1, 1, 1, 256, 256)  # 4 chunks of 128 x 128 uint16 = the 128 KiB target
    np.testing.assert_array_equal(arr[:], TexturedVolume(shape, tile=256, seed=4)[:, :, :, :, :])
    assert len(result.scenes[0].levels) == 3
