"""Convert a ``bioio.BioImage`` to OME-Zarr in one pass over the pixels, with QC on the way.

Per slab of planes (``microfair.convert.slabs``), one dask graph holds: the source read, level 0
re-chunked to write blocks (one shard for NGFF 0.5, else a tile of whole Zarr chunks of about
``conversion.shard_target_bytes``), every pyramid level downsampled from the in-memory blocks of the level
above, one store task per block (zarr encodes a block's chunks together), and the QC reductions on
Zarr-chunk tiles. One ``compute`` runs it all; dask shares
the read tasks, so every source chunk is read once, and memory is bounded by (source chunk + a few Zarr
chunks) per worker and by the slab's graph, not by the file size (``microfair.convert.memory``: the
threads are sized to ``conversion.memory_limit_mb``). Reader warnings that say pixels were lost fail
the conversion (``microfair.convert.guard``).

Publishing is atomic: everything is written to ``.<name>.tmp-<token>`` beside ``out``,
validated with ome-zarr-models, and only then renamed to ``out``. A temporary left by a crash
is removed and the conversion redone.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np

from microfair.config.core import ConversionSettings, QcThresholds
from microfair.publish import publish_dir
from microfair.convert.guard import watch_reader_warnings
from microfair.convert.layout import ChannelPlan, ImagePlan, default_window, group_attributes, validate, write_container, write_image
from microfair.convert.malloc import limit_arenas
from microfair.convert.memory import memory_plan
from microfair.convert.proof import PixelProof, tile_digest_graph
from microfair.convert.shardcheck import check_shards
from microfair.convert.qcblocks import block_qc_graph
from microfair.convert.planes import PlaneEngine, engine_workers, unit_bytes
from microfair.convert.pyramid import build_pyramid, level_shapes, thumbnail_source
from microfair.convert.slabs import combine_qc, slabs
from microfair.convert.source import SceneSource, scene_count, scene_source
from microfair.convert.tiffplanes import HANDLES as TIFF_HANDLES
from microfair.qc.bitdepth import significant_bits_of_scene
from microfair.qc.reduce import QcGraph, scene_qc
from microfair.qc.report import QcReport, SceneQc

log = logging.getLogger(__name__)

# before any reader or zarr thread allocates: the threads a conversion runs share one malloc arena
limit_arenas()

TMP_MARK = ".tmp-"
OLD_MARK = ".old-"


class ConversionError(RuntimeError):
    """The conversion failed; nothing was published at the final name."""


@dataclass
class SceneResult:
    index: int
    name: str
    dtype: str
    levels: list[tuple[int, ...]]
    chunks: tuple[int, ...]
    scale: dict[str, float]
    units: dict[str, str | None]
    channels: list[str]
    rgb: bool

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "dtype": self.dtype, "levels": [list(s) for s in self.levels],
                "chunks": list(self.chunks), "scale": self.scale, "units": self.units, "channels": self.channels,
                "rgb": self.rgb}


@dataclass
class ConversionResult:
    """What was written, where, and the QC report computed on the way."""

    path: Path
    ngff_version: str
    scenes: list[SceneResult]
    qc: QcReport
    seconds: float
    source_bytes: int
    written_bytes: int
    ome_xml_written: bool
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mb_per_second(self) -> float:
        return self.source_bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "ngff_version": self.ngff_version,
                "scenes": [s.to_dict() for s in self.scenes], "seconds": round(self.seconds, 3),
                "source_bytes": self.source_bytes, "written_bytes": self.written_bytes,
                "mb_per_second": round(self.mb_per_second, 2), "ome_xml": self.ome_xml_written,
                "qc": self.qc.to_dict(), **self.extra}


def _tree_size(root: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        for f in files:
            try:
                total += os.stat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def stale_temporaries(out: Path) -> list[Path]:
    """Temporaries of ``out`` left by a crashed run (``.<name>.tmp-*`` and ``.<name>.old-*``)."""
    parent = out.parent
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.iterdir()
                  if p.name.startswith(f".{out.name}{TMP_MARK}") or p.name.startswith(f".{out.name}{OLD_MARK}"))


def _compute(*objs: Any, client: Any = None, workers: int | None = None) -> tuple[Any, ...]:
    if client is None:
        return dask.compute(*objs, num_workers=workers)
    futures = client.compute(list(objs))
    try:
        return tuple(client.gather(futures))
    except BaseException:
        client.cancel(futures)  # the other chunks stop here, before the temporary is removed
        raise


def _store_block(block: np.ndarray, target: Any, offset: tuple[int, ...] = (), block_info: dict | None = None
                 ) -> np.ndarray:
    """Write one dask block to the Zarr chunk it is aligned with; returns its size in bytes."""
    assert block_info is not None
    location = block_info[0]["array-location"]
    offset = offset or (0,) * len(location)
    region = tuple(slice(o + a, o + b) for o, (a, b) in zip(offset, location))
    target[region] = block
    return np.full((1,) * block.ndim, block.nbytes, dtype=np.int64)


def store_level(level: da.Array, target: Any, offset: tuple[int, ...] = ()) -> da.Array:
    """Lazy writes of every block of ``level`` into ``target`` (one block = one shard, or whole Zarr chunks; no locks).

    ``offset`` places ``level`` inside ``target`` (a slab of planes). The result is one number
    per block (bytes written), summed to a scalar. Every block but the last along an axis must be a
    whole number of write units (shards when sharded, else chunks), so no unit is written by two tasks.
    """
    unit = getattr(target, "shards", None) or target.chunks
    for axis, (sizes, u) in enumerate(zip(level.chunks, unit)):
        if any(c % u for c in sizes[:-1]) or (offset and offset[axis] % u):
            raise ValueError(f"dask chunks {level.chunksize} do not align with the Zarr "
                             f"{'shards' if getattr(target, 'shards', None) else 'chunks'} {tuple(unit)}")
    # the target goes in through a partial: as a keyword, dask would take the Zarr array for an array
    per_block = level.map_blocks(functools.partial(_store_block, target=target, offset=tuple(offset)),
                                 chunks=(1,) * level.ndim, dtype=np.int64)
    return per_block.sum()


def _source_chunk_bytes(data: da.Array) -> int:
    return int(math.prod(max(c) if c else 1 for c in data.chunks) * data.dtype.itemsize)


def _plan(src: SceneSource, settings: ConversionSettings) -> ImagePlan:
    shape = tuple(int(s) for s in src.data.shape)
    shapes = level_shapes(shape, min_level_size=settings.min_level_size, max_levels=settings.max_levels)
    dtype = np.dtype(src.data.dtype)
    window = default_window(dtype)
    return ImagePlan(
        name=src.name, dtype=dtype, level_shapes=shapes, scale=src.scale, units=src.units,
        chunks=(1, 1, settings.chunk_z, settings.chunk_xy, settings.chunk_xy),
        compressor=settings.compressor, compression_level=settings.compression_level,
        channels=[ChannelPlan(n, c, window) for n, c in zip(src.channel_names, src.channel_colors)],
        default_z=shape[2] // 2, shard_bytes=settings.shard_target_bytes,
        sharded=settings.ngff_version == "0.5" and settings.shard_target_bytes > 0,
    )


def _with_qc_windows(plan: ImagePlan, qc: SceneQc) -> ImagePlan:
    """Display windows from the measured 0.1-99.9 percentiles; default plane = best focus of channel 0."""
    for ch, cq in zip(plan.channels, qc.channels):
        lo_hi = cq.window
        if lo_hi is None:
            continue
        if plan.dtype.kind in "ui":
            vmin, vmax = ch.window[0], ch.window[1]
        else:
            vmin = cq.minimum if cq.minimum is not None else lo_hi[0]
            vmax = cq.maximum if cq.maximum is not None else lo_hi[1]
        start, end = lo_hi
        if end <= start:
            end = start + (1.0 if plan.dtype.kind in "ui" else 1e-6)
        ch.window = (float(vmin), float(vmax), float(start), float(end))
    if qc.channels and qc.channels[0].best_plane is not None:
        plan.default_z = int(qc.channels[0].best_plane)
    return plan


def convert_to_zarr(img: Any, out: Path, *, settings: ConversionSettings, ome_xml: str | None,
                    qc: QcThresholds | None = None, client: Any = None, overwrite: bool = False,
                    uid: str | None = None) -> ConversionResult:
    """Convert every scene of ``img`` (a ``bioio.BioImage``) to an OME-Zarr at ``out``.

    :param img: the opened image (``microfair.imaging.open_image``).
    :param out: final path of the OME-Zarr (``<stem>.ome.zarr``); its parent is created.
    :param settings: NGFF version (0.5 = Zarr v3, 0.4 = Zarr v2), chunks, pyramid, codec.
    :param ome_xml: original OME-XML, stored verbatim as ``OME/METADATA.ome.xml``; when None the
        reader's ``ome_metadata`` is serialised if it has one, else no file is written.
    :param qc: QC thresholds for the flags (defaults: ``QcThresholds()``); QC statistics are
        always computed, in the same pass.
    :param client: a ``distributed.Client`` to run on; the threaded scheduler when None.
    :param overwrite: replace an existing ``out`` (the old copy is removed only after the new
        one is in place); without it an existing ``out`` raises ``FileExistsError``.
    :param uid: dataset identifier for the log messages.
    """
    limit_arenas()  # before the conversion's threads allocate (microfair.convert.malloc)
    out = Path(out)
    who = uid or out.name
    source = _source_name(img)
    thresholds = qc or QcThresholds()
    version = settings.ngff_version
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists already (pass overwrite=True to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in stale_temporaries(out):
        log.warning("%s: removing %s left by an interrupted conversion", who, stale)
        shutil.rmtree(stale, ignore_errors=True)
    if ome_xml is None:
        ome_xml = _ome_xml_of(img)
    tmp = out.parent / f".{out.name}{TMP_MARK}{uuid.uuid4().hex[:12]}"
    started = time.perf_counter()
    scenes: list[SceneResult] = []
    scene_reports: list[SceneQc] = []
    source_bytes = 0
    written_total = 0
    memory: list[dict[str, Any]] = []
    proof = PixelProof(settings.verify_planes, who)  # pixel-exact proof (microfair.convert.proof)
    try:
        with watch_reader_warnings() as lost:
            n = scene_count(img)
            write_container(tmp, version, n, ome_xml)
            for index in range(n):
                src = scene_source(img, index)
                plan = _plan(src, settings)
                arrays = write_image(tmp, index, plan, version, native=client is None)  # zarrs: threads only
                proof.add_scene(index, src.name, arrays[0], plan.level_block(0), plan.chunks[-1])
                mem = memory_plan(settings.memory_limit_mb, _source_chunk_bytes(src.data), plan.chunks, plan.dtype,
                                  block=plan.level_block(0))
                memory.append(mem.to_dict())
                parts = slabs(src.data, settings.chunk_z, settings.chunk_xy)
                log.info("%s: scene %d (%s) %s %s -> %d level(s), chunks %s in %s %s, %s, NGFF %s; %d slab(s); %s",
                         who, index, src.name, "x".join(map(str, src.data.shape)), src.data.dtype,
                         len(plan.level_shapes), plan.chunks, "shards" if plan.sharded else "write blocks",
                         plan.level_block(0), settings.compressor, version, len(parts),
                         "on the dask cluster" if client is not None else
                         f"{mem.workers} thread(s) of ~{mem.per_worker_mb:.0f} MB, expected peak "
                         f"{mem.expected_peak_mb:.0f} MB (conversion.memory_limit_mb={mem.limit_mb})")
                if client is None and not mem.fits:
                    log.warning("%s: source chunks of %.0f MB need about %.0f MB even with one thread, more than "
                                "conversion.memory_limit_mb=%d; open the file with smaller (plane or tile) chunks",
                                who, mem.source_chunk_mb, mem.expected_peak_mb, mem.limit_mb)
                engine = _plane_engine(src, plan, arrays, settings, thresholds, client, who, proof, index)
                if engine is not None:  # one task per unit of whole planes (microfair.convert.planes)
                    values = engine.run()
                    proof.add_digests(index, (0, 0), values.digests)
                    if lost:
                        raise ConversionError(f"the reader reports lost pixels: {'; '.join(lost)}")
                    written_total += values.written
                    memory[-1].update(engine="planes", units=values.units, workers=values.workers)
                    space, computed = values.space, values.qc
                else:
                    memory[-1]["engine"] = "dask"
                    space, computed, written = _convert_slabs(src, parts, plan, arrays, thresholds, client,
                                                              mem.workers, proof, index, lost)
                    written_total += written
                sq = scene_qc(space, computed, index=index, name=src.name,
                              channel_names=src.channel_names, channel_colors=src.channel_colors,
                              shape=src.data.shape, thresholds=thresholds,
                              significant_bits=significant_bits_of_scene(ome_xml, index))
                scene_reports.append(sq)
                _write_group_attrs(tmp, index, group_attributes(_with_qc_windows(plan, sq), version), version)
                source_bytes += int(src.data.nbytes)
                scenes.append(SceneResult(index, src.name, str(plan.dtype), plan.level_shapes, plan.chunks,
                                          plan.scale, plan.units, src.channel_names, src.rgb))
        verdict = proof.verify(functools.partial(_compute, client=client,
                                               workers=min((m["workers"] for m in memory), default=1)))
        TIFF_HANDLES.close()  # the source files the tifffile fast path kept open (microfair.convert.tiffplanes)
        check_shards(tmp)  # every shard of every level whole (microfair.convert.shardcheck)
        validate(tmp, version)
        _publish(tmp, out, overwrite=overwrite, who=who)
    except BaseException as exc:
        TIFF_HANDLES.close()
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, (FileExistsError, KeyboardInterrupt, SystemExit)):
            raise
        cause = str(exc) or type(exc).__name__
        if not isinstance(exc, ConversionError):
            cause = f"{type(exc).__name__}: {cause}"
        log.error("%s: conversion of %s to %s failed, nothing published: %s", who, source, out, cause)
        raise ConversionError(f"conversion of {who} ({source}) to OME-Zarr failed: {cause}") from exc
    seconds = time.perf_counter() - started
    report = QcReport(source=who, thresholds=thresholds, scenes=scene_reports)
    result = ConversionResult(out, version, scenes, report, seconds, source_bytes, _tree_size(out),
                              ome_xml is not None, extra={"memory": memory, "written_chunk_bytes": written_total,
                                                    "pixel_proof": verdict})
    log.info("%s: OME-Zarr %s published (%d scene(s), %.1f MB in %.1f s, %.0f MB/s); QC: %s", who, out, len(scenes),
             source_bytes / 1e6, seconds, result.mb_per_second,
             "passed" if report.passed else "; ".join(f.reason for f in report.flags))
    return result


def _plane_engine(src: SceneSource, plan: ImagePlan, arrays: list[Any], settings: ConversionSettings,
                  thresholds: QcThresholds, client: Any, who: str, proof: PixelProof, index: int
                  ) -> PlaneEngine | None:
    """The plane engine for this scene, or None for the dask slab graph (a dask cluster, ``engine: dask``, or a
    unit of whole planes too large for ``conversion.memory_limit_mb``)."""
    if client is not None or settings.engine == "dask":
        return None
    unit = unit_bytes(src.data, settings.chunk_z)
    blocks = [plan.level_block(i) for i in range(len(plan.level_shapes))]
    band = unit * min(1.0, blocks[0][-2] / max(1, plan.level_shapes[0][-2]))  # one block row of level 0
    workers = engine_workers(settings.memory_limit_mb, unit, plan.dtype, plan.chunks[-1], band=int(band))
    if workers == 0:
        if settings.engine == "planes":
            raise ConversionError(f"conversion.engine=planes, but a unit of whole planes ({unit / 2**20:.0f} MB) "
                                  f"does not fit conversion.memory_limit_mb={settings.memory_limit_mb}")
        log.info("%s: a unit of whole planes (%.0f MB) does not fit conversion.memory_limit_mb=%d: the dask slab "
                 "graph tiles it", who, unit / 2**20, settings.memory_limit_mb)
        return None
    engine = PlaneEngine(src.data, arrays, chunk_z=settings.chunk_z, tile=plan.chunks[-1],
                         thumb_size=thresholds.thumbnail_size, workers=workers, uid=who, proof=proof, scene=index,
                         blocks=blocks)
    log.info("%s: plane engine, %d unit(s) of up to %.0f MB on %d thread(s)", who, len(engine.units), unit / 2**20,
             workers)
    return engine


def _convert_slabs(src: SceneSource, parts: list[Any], plan: ImagePlan, arrays: list[Any], thresholds: QcThresholds,
                   client: Any, workers: int, proof: PixelProof, index: int, lost: list[str]
                   ) -> tuple[Any, tuple[Any, ...], int]:
    """The dask path: one compute per slab; returns the key space, the scene's QC values and the bytes written."""
    done = []
    graph: QcGraph | None = None
    written_total = 0
    for (t0, t1), (z0, z1) in parts:
        written, values, graph, digests = _convert_slab(src.data[t0:t1, :, z0:z1], plan, arrays, (t0, 0, z0, 0, 0),
                                                        thresholds.thumbnail_size, client, workers)
        proof.add_digests(index, (t0, z0), digests)
        if lost:
            raise ConversionError(f"the reader reports lost pixels: {'; '.join(lost)}")
        done.append(((t0, t1), (z0, z1), values))
        written_total += int(written)
    assert graph is not None
    return graph.space, combine_qc(done, tuple(src.data.shape)), written_total


def _convert_slab(data: da.Array, plan: ImagePlan, arrays: list[Any], offset: tuple[int, ...], thumb_size: int,
                  client: Any, workers: int) -> tuple[int, tuple[Any, ...], QcGraph, Any]:
    """One compute: read the slab once, write every level of it, and reduce its QC statistics."""
    shapes = [(data.shape[0], s[1], data.shape[2], s[3], s[4]) for s in plan.level_shapes]
    # one task per shard (or tile of whole chunks) per level: read, downsample and write big units of work
    levels = build_pyramid(data, shapes, [plan.level_block(i) for i in range(len(shapes))])
    # QC on the Zarr-chunk tiling, so every path gives the same report; one task per block, not per tile
    graph = block_qc_graph(levels[0], thumbnail_source(levels, thumb_size), plan.chunks[-1])
    digests = tile_digest_graph(levels[0], plan.chunks[-1])  # pixel-exact proof: source digests in the same pass
    stores = [store_level(lvl, arr, offset) for lvl, arr in zip(levels, arrays)]
    written, *computed, digests = _compute(da.stack(stores).sum(), *graph.lazy, digests, client=client,
                                           workers=workers)
    return int(written), tuple(computed), graph, digests


def _source_name(img: Any) -> str:
    """The file behind ``img`` for messages (bioio readers keep it in ``_path``), else its type."""
    path = getattr(getattr(img, "reader", None), "_path", None)
    if isinstance(path, (str, os.PathLike)) and str(path):
        return Path(path).name
    return "in-memory image"


def _ome_xml_of(img: Any) -> str | None:
    try:
        meta = img.ome_metadata
        return meta.to_xml() if meta is not None else None
    except Exception:
        return None


def _write_group_attrs(root: Path, index: int, attrs: dict[str, Any], version: str) -> None:
    import zarr

    group = zarr.open_group(str(root / str(index)), mode="r+", zarr_format=3 if version == "0.5" else 2)
    group.attrs.put(attrs)


def _publish(tmp: Path, out: Path, *, overwrite: bool, who: str) -> None:
    """Rename ``tmp`` to ``out``; an existing ``out`` (overwrite) is moved aside first, then removed."""
    old = None
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"{out} appeared during the conversion")
        old = out.parent / f".{out.name}{OLD_MARK}{uuid.uuid4().hex[:12]}"
        os.rename(out, old)
    try:
        publish_dir(tmp, out)  # never over anything that arrived meanwhile, not even an empty folder
    except FileExistsError:
        kept = f"; the previous copy is kept at {old}" if old is not None else ""
        raise FileExistsError(f"{out} appeared during the conversion; nothing was replaced{kept}") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
        log.info("%s: replaced the previous %s", who, out)
