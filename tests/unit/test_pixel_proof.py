"""The pixel-exact proof (microfair.convert.proof): level 0 read back from the temporary Zarr equals the source,
plane by plane; a writer that transposes, flips or shuffles a plane or a tile fails the conversion, naming the
plane, and nothing is published."""

from __future__ import annotations

import struct

import dask.array as da
from dask.delayed import Delayed
import numpy as np
import pytest
from blake3 import blake3

import microfair.convert.planes as planes
import microfair.convert.writer as writer
from microfair.config.core import ConversionSettings
from microfair.convert import ConversionError, convert_to_zarr, stale_temporaries
from microfair.imaging import open_image
from microfair.synthetic import textured_stack, write_ome_tiff

# 2 channels x 3 planes of 96 x 96, chunks of 32 and shards of 2 x 2 chunks: a plane is 4 shards written by
# 4 tasks (edge shards of one chunk), so the plane digest is built from tiles handled by different tasks
SETTINGS = dict(chunk_xy=32, min_level_size=16, max_levels=3, shard_target_bytes=4 * 32 * 32 * 2)
DATA = textured_stack((2, 3, 96, 96), dtype="uint16", seed=31)  # (C, Z, Y, X)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return write_ome_tiff(tmp_path_factory.mktemp("proof") / "in.ome.tiff", DATA, channels=["DAPI", "GFP"])


def settings(**kw) -> ConversionSettings:
    return ConversionSettings(**{**SETTINGS, **kw})


def reference_scene_digest(planes: np.ndarray, tile: int) -> str:
    """The documented definition, written out independently: tile digests keyed by position, per plane."""
    plane_digests = []
    for plane in planes.reshape(-1, *planes.shape[-2:]):
        h = blake3(b"microfair plane digest v1")
        h.update(f":<u2:{plane.shape[0]}x{plane.shape[1]}:{tile}:".encode())
        for iy in range(0, plane.shape[0] // tile + (plane.shape[0] % tile > 0)):
            for ix in range(0, plane.shape[1] // tile + (plane.shape[1] % tile > 0)):
                t = np.ascontiguousarray(plane[iy * tile:(iy + 1) * tile, ix * tile:(ix + 1) * tile], dtype="<u2")
                d = blake3(f"<u2:{t.shape[0]}x{t.shape[1]}:".encode() + t.tobytes()).digest()
                h.update(struct.pack("<II", iy, ix) + d)
        plane_digests.append(h.digest())
    return blake3(b"".join(plane_digests)).hexdigest()


def test_a_good_conversion_verifies_every_plane(tmp_path, source):
    result = convert_to_zarr(open_image(source), tmp_path / "ok.ome.zarr", settings=settings(), ome_xml=None)
    proof = result.extra["pixel_proof"]
    assert proof["verified"] == "6/6 planes identical"
    assert (proof["mode"], proof["checked"], proof["planes"], proof["algorithm"]) == ("all", 6, 6, "BLAKE3")
    assert proof["verdict"] == "verified: 6/6 planes identical"
    (scene,) = proof["scenes"]
    assert scene["source_digest"] == reference_scene_digest(DATA, 32)
    assert result.to_dict()["pixel_proof"]["verified"] == "6/6 planes identical"


def _plane_transposed(a: np.ndarray) -> np.ndarray:
    a[0, 1, 2] = a[0, 1, 2].T.copy()
    return a


def _plane_flipped(a: np.ndarray) -> np.ndarray:
    a[0, 1, 2] = a[0, 1, 2, ::-1].copy()
    return a


def _planes_swapped(a: np.ndarray) -> np.ndarray:
    a[0, 1, [1, 2]] = a[0, 1, [2, 1]]
    return a


def _tiles_swapped(a: np.ndarray) -> np.ndarray:  # tile (0, 0) of one shard with tile (2, 1) of another
    p = a[0, 1, 2]
    first, second = p[0:32, 0:32].copy(), p[64:96, 32:64].copy()
    p[0:32, 0:32], p[64:96, 32:64] = second, first
    return a


def faulty_writer(monkeypatch, fault):
    """Level 0 reaches the Zarr through ``fault`` (the source digests are still those of the real pixels), on the
    dask path (``writer.store_level``) and on the plane engine (``planes.write_level``, one unit at a time)."""
    real = writer.store_level
    real_write = planes.write_level
    bad = fault(DATA[None].copy())  # the whole level 0 as the faulty writer would write it

    def write_level(array, region, block):
        if array.path.endswith("/0") and array.path.count("/") == 1:
            block = bad[region]
        return real_write(array, region, block)

    monkeypatch.setattr(planes, "write_level", write_level)

    def store_level(level, target, offset=()):
        if target.path.endswith("/0") and target.path.count("/") == 1:  # "<scene>/0": level 0
            bad = fault(np.asarray(level.compute()).copy())
            level = da.from_array(bad, chunks=level.chunks)
        return real(level, target, offset)

    monkeypatch.setattr(writer, "store_level", store_level)


@pytest.mark.parametrize("fault,plane", [(_plane_transposed, "z=2"), (_plane_flipped, "z=2"),
                                         (_planes_swapped, "z=1"), (_tiles_swapped, "z=2")],
                         ids=["transposed", "flipped", "planes-swapped", "tiles-swapped"])
@pytest.mark.parametrize("engine", ["planes", "dask"])
def test_a_writer_that_scrambles_pixels_fails_naming_the_plane(tmp_path, source, monkeypatch, fault, plane, engine):
    faulty_writer(monkeypatch, fault)
    out = tmp_path / "bad.ome.zarr"
    with pytest.raises(ConversionError) as err:
        convert_to_zarr(open_image(source), out, settings=settings(engine=engine), ome_xml=None, uid="MF-PROOF-1")
    message = str(err.value)
    assert "MF-PROOF-1" in message and "pixel-exact proof failed" in message
    assert "scene 0 (" in message and f"t=0 c=1 {plane}" in message
    if fault is _tiles_swapped:
        assert "2 of 9 tile(s)" in message and "(0, 0)" in message and "(2, 1)" in message
    assert not out.exists() and not stale_temporaries(out)


def test_sampling_reads_back_the_configured_number_of_planes(tmp_path, source, monkeypatch):
    result = convert_to_zarr(open_image(source), tmp_path / "s.ome.zarr", settings=settings(verify_planes=2),
                             ome_xml=None)
    proof = result.extra["pixel_proof"]
    assert proof["verified"] == "2/2 planes identical"
    assert (proof["mode"], proof["checked"], proof["planes"], proof["verify_planes"]) == ("sample", 2, 6, 2)
    assert proof["verdict"] == "verified: 2/2 planes identical (a sample of 2 of 6)"
    # the sample is the first and the last plane: a fault there fails, a fault in between is not seen
    faulty_writer(monkeypatch, _plane_flipped)  # t=0 c=1 z=2: the last plane
    with pytest.raises(ConversionError, match="t=0 c=1 z=2"):
        convert_to_zarr(open_image(source), tmp_path / "f.ome.zarr", settings=settings(verify_planes=2), ome_xml=None)
    monkeypatch.undo()
    faulty_writer(monkeypatch, _planes_swapped)  # z=1 and z=2 of c=1: z=2 is in the sample
    with pytest.raises(ConversionError, match="t=0 c=1 z=2"):
        convert_to_zarr(open_image(source), tmp_path / "g.ome.zarr", settings=settings(verify_planes=2), ome_xml=None)
    monkeypatch.undo()
    faulty_writer(monkeypatch, lambda a: (a.__setitem__((0, 0, 1), a[0, 0, 1, ::-1].copy()), a)[1])  # not sampled
    unseen = convert_to_zarr(open_image(source), tmp_path / "u.ome.zarr", settings=settings(verify_planes=2),
                             ome_xml=None)
    assert unseen.extra["pixel_proof"]["verified"] == "2/2 planes identical"
    with pytest.raises(ConversionError, match="t=0 c=0 z=1"):  # the same fault, every plane read back
        convert_to_zarr(open_image(source), tmp_path / "v.ome.zarr", settings=settings(verify_planes="all"),
                        ome_xml=None)


def test_the_proof_holds_for_unsharded_v2_output(tmp_path):
    """NGFF 0.4: Zarr v2 chunks, the write blocks tiles of several chunks; float32."""
    data = textured_stack((1, 2, 70, 50), dtype="float32", seed=32)
    src = write_ome_tiff(tmp_path / "f.ome.tiff", data)
    result = convert_to_zarr(open_image(src), tmp_path / "f.ome.zarr", ome_xml=None,
                             settings=settings(ngff_version="0.4", shard_target_bytes=2 * 32 * 32 * 4))
    assert result.extra["pixel_proof"]["verified"] == "2/2 planes identical"


def test_tile_digests_compare_values_not_byte_order():
    from microfair.convert.proof import tile_digest

    a = DATA[0, 0, :32, :32]
    assert tile_digest(a.astype(">u2")) == tile_digest(a) != tile_digest(a.T)
    assert tile_digest(a) != tile_digest(a.astype("int32"))  # the dtype is part of the digest
    assert tile_digest(a[:, :16]) != tile_digest(np.ascontiguousarray(a[:, :16]).reshape(64, 8))  # and the shape


def test_the_convert_stage_records_the_verdict_in_the_ledger_and_the_stage_event(facility_config, ledger):
    from tests.support.synthetic_ingest import ingest_synthetic

    from microfair.ingest import convert_dataset

    (uid,) = ingest_synthetic(facility_config, ledger, n=1, shape=(2, 3, 40, 48))
    assert convert_dataset(facility_config, ledger, uid) == "converted"
    record = ledger.get_record(uid, "pixel_proof")
    assert record["verified"] == "6/6 planes identical" and record["passed"] and record["mode"] == "all"
    (event,) = [e for e in ledger.events(uid, "convert") if e.state == "succeeded"]
    assert event.details["pixel_proof"] == "verified: 6/6 planes identical"


def test_the_dataset_page_section_shows_the_verdict():
    from pathlib import Path
    from types import SimpleNamespace

    import jinja2

    templates = Path(__file__).parents[2] / "plugins" / "microfair_dashboard" / "templates"
    page = jinja2.Environment(loader=jinja2.FileSystemLoader(templates), autoescape=True).get_template(
        "_dataset_pixel_proof.html")
    record = {"verified": "2/2 planes identical", "passed": True, "mode": "sample", "checked": 2, "planes": 6,
              "verify_planes": 2, "algorithm": "BLAKE3", "method": "per tile",
              "scenes": [{"index": 0, "name": "Image:0", "planes": 6, "checked": 2, "identical": 2,
                          "source_digest": "ab" * 32}]}
    html = page.render(d=SimpleNamespace(records={"pixel_proof": record}))
    assert "verified: 2/2 planes identical" in html and "a sample of 2 of 6 planes" in html and "ab" * 32 in html
    assert "Not converted yet" in page.render(d=SimpleNamespace(records={}))
    assert "convert again" in page.render(d=SimpleNamespace(records={"qc": {}}))


def test_the_cli_summary_and_json_carry_the_verdict(tmp_path, source, capsys):
    import json

    from microfair.cli import main

    out = tmp_path / "cli.ome.zarr"
    assert main(["convert", str(source), str(out)]) == 0
    assert "pixel-exact proof: verified: 6/6 planes identical" in capsys.readouterr().out
    assert main(["convert", "--json", "--overwrite", str(source), str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["pixel_proof"]["verified"] == "6/6 planes identical"


def test_the_read_back_in_small_batches_finds_the_same_plane(tmp_path, source, monkeypatch):
    import microfair.convert.proof as proof

    monkeypatch.setattr(proof, "READ_BACK_TASKS", 5)  # 4 shards a plane: one plane per compute
    computes: list[int] = []
    real = writer._compute

    def counting(*objs, **kw):
        if all(isinstance(o, Delayed) for o in objs):  # the read-back's tasks (the write pass is dask arrays)
            computes.append(len(objs))
        return real(*objs, **kw)

    monkeypatch.setattr(writer, "_compute", counting)
    dask_path = settings(engine="dask")  # the read-back after the pass (the plane engine reads back in its pass)
    ok = convert_to_zarr(open_image(source), tmp_path / "ok.ome.zarr", settings=dask_path, ome_xml=None)
    assert ok.extra["pixel_proof"]["verified"] == "6/6 planes identical" and computes == [4] * 6
    faulty_writer(monkeypatch, _planes_swapped)
    with pytest.raises(ConversionError, match="t=0 c=1 z=1"):
        convert_to_zarr(open_image(source), tmp_path / "bad.ome.zarr", settings=dask_path, ome_xml=None)


def test_read_back_arrays_opened_from_many_threads_leave_zarr_config_as_it_was(tmp_path):
    """zarr's ``config.set`` restores what it saw on entry: two threads interleaving it left the zarrs pipeline
    set for the whole process (the plane engine opens read-back arrays in its worker threads)."""
    import threading

    import zarr

    import microfair.convert.proof as proof

    zarr.create_array(str(tmp_path / "a.zarr"), shape=(4, 4), chunks=(2, 2), dtype="uint8")
    before = zarr.config.get("codec_pipeline.path")
    barrier = threading.Barrier(8)

    def open_many():
        for _ in range(100):
            barrier.wait()
            proof._open_level.__wrapped__(str(tmp_path), "a.zarr", "zarrs")

    threads = [threading.Thread(target=open_many) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert zarr.config.get("codec_pipeline.path") == before
