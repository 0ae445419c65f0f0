"""Quality control of microscope images: saturation, SNR (SVI definition), focus per plane,
dynamic range, histograms and thumbnails, flagged against the facility's ``QcThresholds``.

Three entry points share the same reduction code (:mod:`microfair.qc.reduce`):

* during conversion (:func:`microfair.convert.convert_to_zarr`, same pass over the pixels);
* :func:`qc_image` on an opened image file (``microfair qc FILE``);
* :func:`qc_from_zarr` on an OME-Zarr, reading level 0 (``microfair qc ZARR``).

See docs/convert-qc.md for the definitions.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import dask
import dask.array as da

from microfair.config.core import ConversionSettings, QcThresholds
from microfair.qc.bitdepth import significant_bits_of_image, significant_bits_of_scene
from microfair.qc.report import ChannelQc, QcFlag, QcReport, SceneQc, write_qc_report

log = logging.getLogger(__name__)

__all__ = ["ChannelQc", "QcFlag", "QcReport", "SceneQc", "qc_from_zarr", "qc_image", "write_qc_report"]


def _run(level0: da.Array, levels: list[da.Array], *, index: int, name: str, names: list[str], colors: list[str],
         thresholds: QcThresholds, client: Any, significant_bits: int | None) -> SceneQc:
    from microfair.convert.pyramid import thumbnail_source
    from microfair.qc.reduce import qc_graph, scene_qc

    graph = qc_graph(level0, thumbnail_source(levels, thresholds.thumbnail_size))
    if client is None:
        computed = dask.compute(*graph.lazy)
    else:
        computed = client.gather(client.compute(list(graph.lazy)))
    return scene_qc(graph, tuple(computed), index=index, name=name, channel_names=names, channel_colors=colors,
                    shape=level0.shape, thresholds=thresholds, significant_bits=significant_bits)


def qc_image(img: Any, thresholds: QcThresholds | None = None, *, chunk_xy: int | None = None,
             client: Any = None, uid: str | None = None) -> QcReport:
    """QC of every scene of an opened image (``bioio.BioImage``), read once, lazily.

    The image is tiled like the conversion (``chunk_xy``, default ``ConversionSettings().chunk_xy``)
    so that the numbers equal those computed during conversion. The dynamic range is measured
    against the bit depth the image's OME metadata declares, when it does (:mod:`microfair.qc.bitdepth`).
    """
    from microfair.convert.source import scene_count, scene_source

    thresholds = thresholds or QcThresholds()
    xy = chunk_xy or ConversionSettings().chunk_xy
    bits = significant_bits_of_image(img)
    scenes = []
    for i in range(scene_count(img)):
        src = scene_source(img, i)
        level0 = src.data.rechunk((1, 1, 1, xy, xy))
        scenes.append(_run(level0, [level0], index=i, name=src.name, names=src.channel_names,
                           colors=src.channel_colors, thresholds=thresholds, client=client,
                           significant_bits=bits[i] if i < len(bits) else None))
    report = QcReport(source=uid or str(getattr(img, "_path", "") or "image"), thresholds=thresholds, scenes=scenes)
    log.info("%s: QC of %d scene(s): %s", report.source, len(scenes),
             "passed" if report.passed else f"{len(report.flags)} flag(s)")
    return report


def _image_groups(root: Any) -> list[tuple[str, Any]]:
    """(path, group) of every image in an OME-Zarr: bioformats2raw series, or the root image itself."""
    attrs = dict(root.attrs)
    ome = attrs.get("ome", attrs)
    if "multiscales" in ome:
        return [("", root)]
    if "bioformats2raw.layout" in ome:
        series: list[str] | None = None
        if "OME" in root:
            o = dict(root["OME"].attrs)
            series = (o.get("ome") or o).get("series")
        if not series:
            series = []
            while str(len(series)) in root:
                series.append(str(len(series)))
        return [(s, root[s]) for s in series]
    raise ValueError("not an OME-Zarr image nor a bioformats2raw container (no multiscales)")


def _to_tczyx(arr: da.Array, axes: list[str]) -> da.Array:
    index = tuple(slice(None) if a in axes else None for a in "tczyx")
    present = [a for a in "tczyx" if a in axes]
    if sorted(present) != sorted(axes):
        raise ValueError(f"unsupported axes {axes} (expected a subset of t, c, z, y, x)")
    arr = arr.transpose([axes.index(a) for a in present])
    return arr[index]


def qc_from_zarr(path: Path | str, thresholds: QcThresholds | None = None, *, client: Any = None,
                 uid: str | None = None) -> QcReport:
    """QC of an OME-Zarr (0.4 or 0.5; bioformats2raw container or single image), from level 0.

    The bit depth per scene comes from the container's ``OME/METADATA.ome.xml`` when there is one.
    """
    import zarr

    thresholds = thresholds or QcThresholds()
    root = zarr.open_group(str(path), mode="r")
    ome_file = Path(path) / "OME" / "METADATA.ome.xml"
    ome_xml = ome_file.read_text(encoding="utf-8", errors="replace") if ome_file.is_file() else None
    scenes = []
    for i, (sub, group) in enumerate(_image_groups(root)):
        attrs = dict(group.attrs)
        ome = attrs.get("ome", attrs)
        ms = ome["multiscales"][0]
        axes = [a["name"] if isinstance(a, dict) else a for a in ms.get("axes", list("tczyx"))]
        levels = [_to_tczyx(da.from_zarr(group[d["path"]]), axes) for d in ms["datasets"]]
        omero = ome.get("omero") or {}
        chans = omero.get("channels") or []
        n_c = levels[0].shape[1]
        names = [str(chans[c].get("label", f"C{c}")) if c < len(chans) else f"C{c}" for c in range(n_c)]
        colors = [str(chans[c].get("color", "FFFFFF")) if c < len(chans) else "FFFFFF" for c in range(n_c)]
        name = ms.get("name") or omero.get("name") or sub or str(i)
        scenes.append(_run(levels[0], levels, index=i, name=str(name), names=names, colors=colors,
                           thresholds=thresholds, client=client,
                           significant_bits=significant_bits_of_scene(ome_xml, i)))
    report = QcReport(source=uid or str(path), thresholds=thresholds, scenes=scenes)
    log.info("%s: QC from OME-Zarr, %d scene(s): %s", report.source, len(scenes),
             "passed" if report.passed else f"{len(report.flags)} flag(s)")
    return report
