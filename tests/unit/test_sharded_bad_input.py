"""Sharded output (NGFF 0.5), bad input: a shard torn in the temporary before publication, at level 0 or above,
ends in a ConversionError naming it, nothing at the final path, and a re-run that succeeds. (A process killed
mid-write is tests/unit/test_convert_bad_input.py::test_a_shard_half_written_when_the_process_dies.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from microfair.config.core import ConversionSettings
from microfair.convert import ConversionError, convert_to_zarr, stale_temporaries
from microfair.convert.proof import PixelProof
from microfair.convert.shardcheck import TornShard, check_shard, check_shards
from microfair.imaging import open_image
from microfair.synthetic import textured_stack, write_ome_tiff

# 96 x 96 uint16 planes, 32-pixel chunks in shards of 2 x 2 chunks: 4 shards per plane at level 0, 1 at level 1
SETTINGS = ConversionSettings(chunk_xy=32, min_level_size=16, max_levels=3, shard_target_bytes=4 * 32 * 32 * 2)
DATA = textured_stack((2, 2, 96, 96), seed=41)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return write_ome_tiff(tmp_path_factory.mktemp("torn") / "in.ome.tiff", DATA)


def tear_before_publication(monkeypatch, level: int, keep: float = 0.5) -> list[Path]:
    """Cut a shard of ``level`` of the temporary to ``keep`` of its size just before the read-back."""
    real = PixelProof.verify
    torn: list[Path] = []

    def verify(self, compute=None):
        array = self.scenes[0].array
        root = Path(array.store.root) / "0" / str(level) / "c"
        victim = sorted(p for p in root.rglob("*") if p.is_file())[1]
        victim.write_bytes(victim.read_bytes()[: int(victim.stat().st_size * keep)])
        torn.append(victim)
        return real(self, compute)

    monkeypatch.setattr(PixelProof, "verify", verify)
    return torn


@pytest.mark.parametrize("level,expect", [(0, "cannot be read back as written"), (1, "is torn")])
def test_a_torn_shard_in_the_temporary_fails_and_a_rerun_succeeds(tmp_path, source, monkeypatch, level, expect):
    out = tmp_path / "torn.ome.zarr"
    torn = tear_before_publication(monkeypatch, level)
    with pytest.raises(ConversionError) as err:
        convert_to_zarr(open_image(source), out, settings=SETTINGS, ome_xml=None, uid="MF-TORN-1")
    message = str(err.value)
    assert torn and "MF-TORN-1" in message and expect in message
    assert ("level 0 0/0 t=0 c=0 z=0" in message) if level == 0 else (torn[0].name in message and "/1/c/" in message)
    assert not out.exists() and not stale_temporaries(out)

    monkeypatch.undo()
    result = convert_to_zarr(open_image(source), out, settings=SETTINGS, ome_xml=None, uid="MF-TORN-1")
    assert result.extra["pixel_proof"]["verified"] == "4/4 planes identical"
    np.testing.assert_array_equal(zarr.open_group(str(out / "0"), mode="r")["0"][0], DATA)


def test_every_shard_of_every_level_is_checked(tmp_path, source):
    result = convert_to_zarr(open_image(source), tmp_path / "ok.ome.zarr", settings=SETTINGS, ome_xml=None)
    files = [p for p in result.path.rglob("*") if p.is_file() and "/c/" in str(p.relative_to(result.path.parent))]
    assert check_shards(result.path) == len(files) == 4 * (4 + 1 + 1)  # planes x (level 0, 1, 2) shards
    shard = sorted((result.path / "0" / "1" / "c").rglob("*"))[-1]
    data = bytearray(shard.read_bytes())
    check_shard(shard, 4)
    data[-5] ^= 0xFF  # one bit pattern of the index changed, same size
    shard.write_bytes(bytes(data))
    with pytest.raises(TornShard, match="CRC32C"):
        check_shard(shard, 4)
    shard.write_bytes(b"\0" * 10)
    with pytest.raises(TornShard, match="shorter than its own index"):
        check_shards(result.path)
