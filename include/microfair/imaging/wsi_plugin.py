"""microfair's bioio reader for TIFF-based whole-slide images (Aperio SVS, Hamamatsu NDPI, ...), over tifffile.

bioio-tifffile reads these files when asked, but it claims only ``.tif/.tiff/.lsm`` (so a ``.svs``
is refused by extension), shows the thumbnail, label and macro pictures as scenes of their own
(a slide label can carry a patient or case number) and finds no pixel size in an SVS. This plugin:

* claims the whole-slide extensions that tifffile parses (:data:`EXTENSIONS`) and checks that
  tifffile really recognises the file as one of its whole-slide kinds (:data:`SLIDE_KINDS`);
* gives one scene per *main* image series, at full resolution (pyramid level 0), RGB as samples
  (``TCZYXS`` with S = 3); the associated pictures (thumbnail, label, macro, overview) are never
  pixels of the dataset, they are only listed in the metadata;
* reads the pixel size from the file (SVS ``MPP``, else the TIFF resolution tags in cm or inch);
* records the file's own pyramid (per level: shape and downsample factor) on
  :attr:`Reader.source_pyramid`, in the xarray attrs and in the OME metadata (a MapAnnotation in
  namespace :data:`PYRAMID_NAMESPACE`), and the associated pictures it did not convert.

The lazy path reads one block of tiles per dask chunk through tifffile's Zarr view of level 0;
each chunk opens the file itself (picklable, fork-safe), so memory never depends on the slide.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bioio_base.reader
import bioio_base.reader_metadata
import dask.array as da
import numpy as np
import tifffile
import xarray as xr
from bioio_base import exceptions, io
from bioio_base.types import PhysicalPixelSizes
from fsspec.implementations.local import LocalFileSystem
from ome_types import OME
from ome_types.model import Map as OmeMap
from ome_types.model import AnnotationRef, MapAnnotation, StructuredAnnotations

from microfair.imaging.ome_build import ImageSpec, ObjectiveSpec, build_ome

log = logging.getLogger(__name__)

READER_NAME = "microfair-wsi"
#: Extensions of the TIFF-based whole-slide formats tifffile parses.
EXTENSIONS = [".svs", ".ndpi", ".scn", ".bif"]
#: tifffile series kinds this reader accepts (the file must be recognised as one of them).
SLIDE_KINDS = {"svs", "ndpi", "scn", "bif"}
#: Series names of the associated pictures of a slide (never converted; listed in the metadata).
ASSOCIATED = {"thumbnail", "label", "macro", "overview", "map"}
PYRAMID_NAMESPACE = "microfair.org/source-pyramid"
#: Scanner maker by tifffile series kind (for the OME Instrument).
MANUFACTURERS = {"svs": "Leica Biosystems (Aperio)", "ndpi": "Hamamatsu", "scn": "Leica Biosystems",
                 "bif": "Roche Ventana"}
#: Target dask chunk edge in pixels (rounded to whole tiles).
CHUNK_EDGE = 2048
_CM_PER_UNIT = {2: 2.54, 3: 1.0}  # TIFF ResolutionUnit: inch, centimetre


class ReaderMetadata(bioio_base.reader_metadata.ReaderMetadata):
    """bioio plugin entry: which files we read and which Reader reads them."""

    @staticmethod
    def get_supported_extensions() -> list[str]:
        return list(EXTENSIONS)

    @staticmethod
    def get_reader() -> type[bioio_base.reader.Reader]:
        return Reader


@dataclass(frozen=True)
class PyramidLevel:
    level: int
    shape: tuple[int, ...]  # the level's own axes, e.g. (Y, X, S)
    downsample: float  # level-0 width / this level's width

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "shape": list(self.shape), "downsample": round(self.downsample, 4)}


@dataclass(frozen=True)
class SlideImage:
    """One main image of the slide, as tifffile describes it (no pixels read)."""

    series: int
    name: str
    kind: str
    axes: str  # tifffile axes of level 0, e.g. "YXS"
    shape: tuple[int, ...]
    dtype: str
    tile: tuple[int, int]  # (rows, columns) of one stored tile or strip
    pixel_size_um: tuple[float | None, float | None]  # Y, X
    magnification: float | None
    pyramid: tuple[PyramidLevel, ...]


def describe_slide(path: str) -> tuple[list[SlideImage], list[str]]:
    """The main images and the names of the associated pictures; ValueError if not a whole-slide TIFF."""
    with tifffile.TiffFile(path) as tif:
        images, associated = [], []
        for i, series in enumerate(tif.series):
            if series.kind not in SLIDE_KINDS:
                continue
            name = series.name or f"Image {i}"
            if name.strip().lower() in ASSOCIATED:
                associated.append(name)
                continue
            images.append(_describe_series(tif, i, series))
        if not images:
            kinds = sorted({s.kind for s in tif.series})
            raise ValueError(f"tifffile does not recognise a whole-slide image in this file (series kinds {kinds})")
        return images, associated


def _describe_series(tif: tifffile.TiffFile, index: int, series: Any) -> SlideImage:
    base = series.levels[0]
    page = base.keyframe
    axes = base.axes
    width = base.shape[axes.index("X")]
    pyramid = tuple(
        PyramidLevel(n, tuple(int(v) for v in lvl.shape), width / lvl.shape[lvl.axes.index("X")])
        for n, lvl in enumerate(series.levels)
    )
    tile = (int(page.tilelength or page.rowsperstrip or base.shape[axes.index("Y")]),
            int(page.tilewidth or width))
    return SlideImage(
        series=index, name=series.name or f"Image {index}", kind=series.kind, axes=axes,
        shape=tuple(int(v) for v in base.shape), dtype=np.dtype(base.dtype).name, tile=tile,
        pixel_size_um=_pixel_size_um(tif, page), magnification=_magnification(tif, page), pyramid=pyramid,
    )


def _pixel_size_um(tif: tifffile.TiffFile, page: Any) -> tuple[float | None, float | None]:
    """(Y, X) in µm: SVS ``MPP``, else XResolution/YResolution with a cm or inch unit."""
    if tif.pages.first.is_svs:
        mpp = tifffile.tifffile.svs_description_metadata(tif.pages.first.description).get("MPP")
        if mpp:
            return float(mpp), float(mpp)
    unit = page.tags.get("ResolutionUnit")
    cm = _CM_PER_UNIT.get(int(unit.value)) if unit is not None else None
    sizes = []
    for tag in ("YResolution", "XResolution"):
        res = page.tags.get(tag)
        num, den = res.value if res is not None else (0, 1)
        sizes.append(cm * 1e4 * den / num if cm and num and den else None)
    return sizes[0], sizes[1]


def _magnification(tif: tifffile.TiffFile, page: Any) -> float | None:
    first = tif.pages.first
    if first.is_svs:
        mag = tifffile.tifffile.svs_description_metadata(first.description).get("AppMag")
        return float(mag) if mag else None
    if first.is_ndpi:
        mag = (first.ndpi_tags or {}).get("Magnification")
        return float(mag) if mag else None
    return None


class SlideTiles:
    """Array-like view of level 0 of one slide image that reads on indexing (one dask chunk per call)."""

    def __init__(self, path: str, image: SlideImage) -> None:
        self.path, self.series = path, image.series
        self.shape, self.dtype, self.ndim = image.shape, np.dtype(image.dtype), len(image.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(tifffile.imread(self.path, series=self.series, level=0, selection=key))


class Reader(bioio_base.reader.Reader):
    """Read TIFF-based whole-slide images at full resolution, one scene per main image.

    Parameters
    ----------
    image: path to a local whole-slide file (``.svs``, ``.ndpi``, ...).
    fs_kwargs: passed to fsspec (only local files are supported).
    """

    plugin_name = READER_NAME

    @staticmethod
    def _is_supported_image(fs: Any, path: str, **kwargs: Any) -> bool:
        if not isinstance(fs, LocalFileSystem):
            return False
        try:
            describe_slide(path)
            return True
        except Exception:  # noqa: BLE001 - any parse failure means "not ours"
            return False

    def __init__(self, image: Any, fs_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self._fs, self._path = io.pathlike_to_fs(image, enforce_exists=True, fs_kwargs=fs_kwargs or {})
        if not isinstance(self._fs, LocalFileSystem):
            raise exceptions.UnsupportedFileFormatError(READER_NAME, self._path, "only local files")
        try:
            self._images, self.associated_images = describe_slide(self._path)
        except Exception as err:
            raise exceptions.UnsupportedFileFormatError(READER_NAME, self._path, str(err)) from err
        names = [im.name for im in self._images]
        self._scenes = tuple(n if names.count(n) == 1 else f"{n} #{i}" for i, n in enumerate(names))

    @property
    def scenes(self) -> tuple[str, ...]:
        return self._scenes

    @property
    def slide_image(self) -> SlideImage:
        return self._images[self.current_scene_index]

    @property
    def source_pyramid(self) -> list[dict[str, Any]]:
        """The file's own resolution levels of the current scene: level, shape, downsample."""
        return [lvl.to_dict() for lvl in self.slide_image.pyramid]

    def _chunks(self) -> tuple[int, ...]:
        im = self.slide_image
        th, tw = im.tile
        edge = {"Y": max(th, CHUNK_EDGE // th * th), "X": max(tw, CHUNK_EDGE // tw * tw)}
        return tuple(min(edge[a], n) if a in edge else (n if a == "S" else 1) for a, n in zip(im.axes, im.shape))

    def _to_xarray(self, data: Any) -> xr.DataArray:
        im = self.slide_image
        if set(im.axes) - set("YXS"):
            raise exceptions.UnsupportedFileFormatError(
                READER_NAME, self._path, f"slide image axes {im.axes!r}: only Y, X and samples are mapped")
        target = "TCZYXS" if "S" in im.axes else "TCZYX"
        order = [im.axes.index(a) for a in target if a in im.axes]
        data = data.transpose(order)[(None, None, None)]
        return xr.DataArray(data, dims=list(target), attrs={
            "source_pyramid": self.source_pyramid, "associated_images": list(self.associated_images),
            "slide_kind": im.kind})

    def _read_delayed(self) -> xr.DataArray:
        im = self.slide_image
        source = SlideTiles(self._path, im)
        name = f"wsi-{Path(self._path).name}-{im.series}-{Path(self._path).stat().st_mtime_ns}"
        meta = np.empty((0,) * source.ndim, dtype=source.dtype)
        return self._to_xarray(da.from_array(source, chunks=self._chunks(), meta=meta, name=name))

    def _read_immediate(self) -> xr.DataArray:
        im = self.slide_image
        return self._to_xarray(tifffile.imread(self._path, series=im.series, level=0))

    @property
    def physical_pixel_sizes(self) -> PhysicalPixelSizes:
        y, x = self.slide_image.pixel_size_um
        return PhysicalPixelSizes(None, y, x)

    @property
    def ome_metadata(self) -> OME:
        specs = []
        for name, im in zip(self.scenes, self._images):
            sizes = {"Y": im.shape[im.axes.index("Y")], "X": im.shape[im.axes.index("X")],
                     "S": im.shape[im.axes.index("S")] if "S" in im.axes else 1}
            levels = ", ".join(f"{'x'.join(map(str, lvl.shape))} (1/{lvl.downsample:g})" for lvl in im.pyramid)
            specs.append(ImageSpec(name=name, sizes=sizes, dtype=im.dtype,
                                   pixel_size_um=(None, *im.pixel_size_um),
                                   description=f"{im.kind} whole-slide image, file pyramid: {levels}"))
        first = self._images[0]
        objective = ObjectiveSpec(magnification=first.magnification) if first.magnification else None
        ome = build_ome(specs, objective=objective, manufacturer=MANUFACTURERS.get(first.kind),
                        creator=f"microfair {READER_NAME} (tifffile {tifffile.__version__})")
        annotations = list(ome.structured_annotations.map_annotations) if ome.structured_annotations else []
        for image, im in zip(ome.images, self._images):
            ann_id = f"Annotation:{len(annotations)}"
            entries = [OmeMap.M(k=f"level {lvl.level}", value=f"shape {list(lvl.shape)} downsample {lvl.downsample:g}")
                       for lvl in im.pyramid]
            entries += [OmeMap.M(k="associated image (not converted)", value=n) for n in self.associated_images]
            annotations.append(MapAnnotation(id=ann_id, namespace=PYRAMID_NAMESPACE, value=OmeMap(ms=entries)))
            image.annotation_refs.append(AnnotationRef(id=ann_id))
        ome.structured_annotations = StructuredAnnotations(map_annotations=annotations)
        return ome
