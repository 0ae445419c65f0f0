"""microfair's bioio reader plugin for Bitplane Imaris ``.ims`` files (Imaris 5.5 layout), over ``h5py``.

An Imaris 5.5 file is HDF5: ``DataSet/ResolutionLevel r/TimePoint t/Channel c/Data`` holds
one (Z, Y, X) volume per time point and channel, padded up to the HDF5 chunk size, and
``DataSetInfo`` holds the metadata as attributes stored as arrays of single characters.

What is read: the full-resolution level (``ResolutionLevel 0``), cropped to the level's
``ImageSizeZ/Y/X`` (else ``DataSetInfo/Image`` ``X``/``Y``/``Z``); physical sizes from
``ExtMin``/``ExtMax`` (the extents are voxel edges, so size = extent / count); channel names, colours and
wavelengths from ``DataSetInfo/Channel c``; the time increment from ``TimeInfo``; the
file's own resolution levels as :attr:`Reader.source_pyramid` (also in the xarray attrs and
an OME MapAnnotation in namespace ``microfair.org/source-pyramid``).

The lazy path hands out one z-plane per dask chunk. Reading one plane of a gzip HDF5 chunk
decodes the whole chunk, so each thread keeps the planes of its last two chunks (each at most
:data:`MAX_CHUNK_BYTES`) for the next planes. Each chunk opens the file itself, so the array
pickles.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections import OrderedDict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import bioio_base.reader
import bioio_base.reader_metadata
import dask.array as da
import h5py
import numpy as np
import xarray as xr
from bioio_base.types import PhysicalPixelSizes
from ome_types import OME
from ome_types.model import AnnotationRef, MapAnnotation, StructuredAnnotations
from ome_types.model import Map as OmeMap

from microfair.imaging.errors import DamagedImage, UnsupportedLayout
from microfair.imaging.lazy_index import expand_key
from microfair.imaging.local_files import open_local, recognised_locally
from microfair.imaging.ome_build import ChannelSpec, ImageSpec, ObjectiveSpec, build_ome

log = logging.getLogger(__name__)

READER_NAME = "microfair-ims"

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
#: HDF5 looks for its superblock at 0, 512, 1024, 2048 ... (after a user block)
SUPERBLOCK_OFFSETS = (0, 512, 1024, 2048, 4096)
PYRAMID_NAMESPACE = "microfair.org/source-pyramid"
MAX_CHUNK_BYTES = 16 * 2**20
UNITS_UM = {"nm": 1e-3, "um": 1.0, "µm": 1.0, "micrometers": 1.0, "mm": 1e3, "m": 1e6}
_INDEXED = re.compile(r"^(ResolutionLevel|TimePoint|Channel) (\d+)$")


class ReaderMetadata(bioio_base.reader_metadata.ReaderMetadata):
    """bioio plugin entry: which files we read and which Reader reads them."""

    @staticmethod
    def get_supported_extensions() -> list[str]:
        return [".ims"]

    @staticmethod
    def get_reader() -> type[bioio_base.reader.Reader]:
        return Reader


def has_hdf5_signature(path: str | Path) -> bool:
    with open(path, "rb") as fh:
        for offset in SUPERBLOCK_OFFSETS:
            fh.seek(offset)
            if fh.read(8) == HDF5_MAGIC:
                return True
    return False


def attr_text(group: h5py.Group, name: str) -> str | None:
    """An Imaris attribute (array of single bytes) as text; None if absent or empty."""
    if name not in group.attrs:
        return None
    value = group.attrs[name]
    raw = value.tobytes() if isinstance(value, np.ndarray) else value
    text = raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)
    text = text.replace("\x00", "").strip()
    return text or None


def _indexed(group: h5py.Group, kind: str) -> list[int]:
    found = sorted(int(m.group(2)) for k in group if (m := _INDEXED.match(k)) and m.group(1) == kind)
    if found != list(range(len(found))):
        raise DamagedImage(f"{group.name}: {kind} groups {found} are not numbered 0..{len(found) - 1}")
    return found


#: per thread, the last HDF5 z-blocks read whole: (path, mtime, t, c, block) -> (Z, Y, X) array
_LAST_BLOCK = threading.local()
#: how many blocks each thread keeps (dask's order alternates between two neighbouring blocks)
BLOCKS_KEPT = 2


class ImsVolume:
    """Array-like (T, C, Z, Y, X) view of resolution level 0 that reads on indexing.

    dask calls ``__getitem__`` once per chunk (one plane); each call opens the file, reads
    and closes it. Only the path and shape are pickled. With ``block_depth`` > 1 (the HDF5
    chunk depth), a whole-plane request reads the planes of its HDF5 chunk once and keeps
    them (:data:`BLOCKS_KEPT` blocks per thread) for the next planes, so a gzip chunk is decoded
    about once per thread, not once per plane.
    """

    def __init__(self, path: str, shape: tuple[int, ...], dtype: str, block_depth: int = 1) -> None:
        self.path, self.shape, self.dtype, self.ndim = path, tuple(shape), np.dtype(dtype), 5
        self.block_depth = block_depth

    def __getitem__(self, key: Any) -> np.ndarray:
        key = expand_key(key, 5)
        # every index as a slice (an integer keeps its axis here and drops it at the end)
        spans = [k if isinstance(k, slice) else slice(int(k) % n, int(k) % n + 1) for k, n in zip(key, self.shape)]
        ranges = [range(n)[k] for k, n in zip(spans, self.shape)]
        try:
            if self.block_depth > 1 and [len(r) for r in ranges[:3]] == [1, 1, 1] \
                    and [len(r) for r in ranges[3:]] == list(self.shape[3:]):
                plane = self._plane_from_block(ranges[0][0], ranges[1][0], ranges[2][0])
                out = plane[None, None, None][..., spans[3], spans[4]]
            else:
                with h5py.File(self.path, "r") as f:
                    level = f["DataSet/ResolutionLevel 0"]
                    out = np.array([[level[f"TimePoint {t}/Channel {c}/Data"][tuple(spans[2:])] for c in ranges[1]]
                                    for t in ranges[0]], dtype=self.dtype)
        except (OSError, KeyError) as err:
            raise DamagedImage(f"pixel block {key} cannot be read ({type(err).__name__}: {err})") from err
        # integer indices drop their axis, as numpy would
        return out[tuple(0 if not isinstance(k, slice) else slice(None) for k in key)]

    def _plane_from_block(self, t: int, c: int, z: int) -> np.ndarray:
        block = z // self.block_depth
        tag = (self.path, os.stat(self.path).st_mtime_ns, t, c, block)
        kept: OrderedDict[tuple[Any, ...], np.ndarray] = _LAST_BLOCK.__dict__.setdefault("blocks", OrderedDict())
        if tag in kept:
            kept.move_to_end(tag)
        else:
            z0, z1 = block * self.block_depth, min((block + 1) * self.block_depth, self.shape[2])
            with h5py.File(self.path, "r") as f:
                data = f[f"DataSet/ResolutionLevel 0/TimePoint {t}/Channel {c}/Data"]
                kept[tag] = np.asarray(data[z0:z1, : self.shape[3], : self.shape[4]], dtype=self.dtype)
            while len(kept) > BLOCKS_KEPT:
                kept.popitem(last=False)
        return kept[tag][z % self.block_depth]


class Reader(bioio_base.reader.Reader):
    """Read a Bitplane Imaris 5.5 ``.ims`` file (one scene: resolution level 0).

    Parameters
    ----------
    image: path to a local ``.ims`` file.
    fs_kwargs: passed to fsspec (only local files are supported).
    """

    plugin_name = READER_NAME

    @staticmethod
    def _is_supported_image(fs: Any, path: str, **kwargs: Any) -> bool:
        return recognised_locally(fs, path, has_hdf5_signature)

    def __init__(self, image: Any, fs_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self._fs, self._path = open_local(READER_NAME, image, fs_kwargs)
        if not has_hdf5_signature(self._path):
            raise DamagedImage("no HDF5 superblock signature at offsets "
                               f"{', '.join(map(str, SUPERBLOCK_OFFSETS))}: bad magic")
        try:
            with h5py.File(self._path, "r") as f:
                self._read_layout(f)
        except (DamagedImage, UnsupportedLayout):
            raise
        except (OSError, KeyError, ValueError) as err:
            raise DamagedImage(f"the HDF5 structure cannot be read ({type(err).__name__}: {err})") from err

    def _read_layout(self, f: h5py.File) -> None:
        if "DataSet" not in f or "DataSetInfo" not in f:
            raise UnsupportedLayout(f"an HDF5 file without the Imaris groups DataSet and DataSetInfo "
                                    f"(top-level groups: {', '.join(sorted(f)) or 'none'})")
        levels = _indexed(f["DataSet"], "ResolutionLevel")
        if not levels:
            raise UnsupportedLayout("an Imaris file without DataSet/ResolutionLevel groups")
        level0 = f["DataSet/ResolutionLevel 0"]
        times = _indexed(level0, "TimePoint")
        channels = _indexed(level0[f"TimePoint {times[0]}"], "Channel") if times else []
        if not times or not channels:
            raise DamagedImage("DataSet/ResolutionLevel 0 holds no TimePoint/Channel data")
        image = f["DataSetInfo/Image"]
        first = level0["TimePoint 0/Channel 0/Data"]
        if first.ndim != 3:
            raise UnsupportedLayout(f"Data arrays of {first.ndim} axes; an Imaris 5.5 volume has (Z, Y, X)")
        stored = tuple(first.shape)
        zyx = _image_size(level0["TimePoint 0/Channel 0"], image, stored)
        if any(a > b for a, b in zip(zyx, stored)):
            raise DamagedImage(f"the image size is {zyx} (Z, Y, X) but the Data arrays are only {stored}")
        for t in times:
            for c in channels:
                ds = level0.get(f"TimePoint {t}/Channel {c}/Data")
                if ds is None:
                    raise DamagedImage(f"DataSet/ResolutionLevel 0/TimePoint {t}/Channel {c}/Data is missing")
                if ds.shape != stored or ds.dtype != first.dtype:
                    raise UnsupportedLayout(f"TimePoint {t}/Channel {c} is {ds.shape} {ds.dtype}, "
                                            f"TimePoint 0/Channel 0 is {stored} {first.dtype}")
        self._shape = (len(times), len(channels), *zyx)
        self._dtype = first.dtype.name
        self._h5_chunk_z = first.chunks[0] if first.chunks else 1
        self._pyramid = []
        for r in levels:
            group = f[f"DataSet/ResolutionLevel {r}"].get("TimePoint 0/Channel 0")
            if group is not None and "Data" in group:
                padded = tuple(group["Data"].shape)
                self._pyramid.append({"level": r, "shape": list(_image_size(group, image if r == 0 else None, padded)),
                                      "stored_shape": list(padded)})
        self._info = {k: attr_text(image, k) for k in image.attrs}
        self._channel_info = [
            {k: attr_text(f[f"DataSetInfo/Channel {c}"], k) for k in f[f"DataSetInfo/Channel {c}"].attrs}
            if f"DataSetInfo/Channel {c}" in f else {} for c in channels
        ]
        time_info = f["DataSetInfo/TimeInfo"] if "DataSetInfo/TimeInfo" in f else None
        self._timestamps = [_date(attr_text(time_info, f"TimePoint{t + 1}")) for t in times] if time_info else []

    @property
    def scenes(self) -> tuple[str, ...]:
        return (self._info.get("Name") or Path(self._path).stem,)

    @property
    def source_pyramid(self) -> list[dict[str, Any]]:
        """The file's own resolution levels: level, (Z, Y, X) shape, and the padded shape as stored."""
        return [dict(level) for level in self._pyramid]

    def _block_depth(self) -> int:
        """The HDF5 chunk depth in z, when that many whole planes fit in :data:`MAX_CHUNK_BYTES`; else 1."""
        plane = int(np.prod(self._shape[3:])) * np.dtype(self._dtype).itemsize
        depth = max(1, min(self._h5_chunk_z, self._shape[2]))
        return depth if depth * plane <= MAX_CHUNK_BYTES else 1

    def _to_xarray(self, data: Any) -> xr.DataArray:
        names = [c.name or f"Channel:0:{i}" for i, c in enumerate(self._channels())]
        return xr.DataArray(data, dims=list("TCZYX"), coords={"C": names},
                            attrs={"source_pyramid": self.source_pyramid})

    def _read_delayed(self) -> xr.DataArray:
        source = ImsVolume(self._path, self._shape, self._dtype, self._block_depth())
        chunks = (1, 1, 1, *self._shape[3:])
        name = f"ims-{Path(self._path).name}-{Path(self._path).stat().st_mtime_ns}"
        meta = np.empty((0,) * 5, dtype=source.dtype)
        return self._to_xarray(da.from_array(source, chunks=chunks, meta=meta, name=name))

    def _read_immediate(self) -> xr.DataArray:
        return self._to_xarray(ImsVolume(self._path, self._shape, self._dtype)[...])

    # ---- metadata -------------------------------------------------------------------

    @property
    def physical_pixel_sizes(self) -> PhysicalPixelSizes:
        factor = UNITS_UM.get((self._info.get("Unit") or "um").lower())
        sizes = []
        for axis, n in zip("210", self._shape[2:]):  # ExtMin2/ExtMax2 is Z
            lo, hi = (_float(self._info.get(f"Ext{e}{axis}"), zero=True) for e in ("Min", "Max"))
            ok = factor is not None and lo is not None and hi is not None and hi > lo and n > 0
            sizes.append((hi - lo) / n * factor if ok else None)
        return PhysicalPixelSizes(*sizes)

    @property
    def time_interval(self) -> timedelta | None:
        stamps = self._timestamps
        if len(stamps) < 2 or stamps[0] is None or stamps[-1] is None or stamps[-1] <= stamps[0]:
            return None
        return (stamps[-1] - stamps[0]) / (len(stamps) - 1)

    def _channels(self) -> list[ChannelSpec]:
        return [ChannelSpec(info.get("Name") or None, _float(info.get("LSMEmissionWavelength")),
                            _float(info.get("LSMExcitationWavelength"))) for info in self._channel_info]

    def _colours(self) -> list[tuple[int, int, int] | None]:
        out = []
        for info in self._channel_info:
            parts = [_float(p, zero=True) for p in (info.get("Color") or "").split()]
            ok = len(parts) == 3 and all(p is not None and 0 <= p <= 1 for p in parts)
            out.append(tuple(round(p * 255) for p in parts) if ok else None)  # type: ignore[misc]
        return out

    @property
    def ome_metadata(self) -> OME:
        na, power = _float(self._info.get("NumericalAperture")), _float(self._info.get("LensPower"))
        manufacturer = self._info.get("ManufactorString")
        spec = ImageSpec(
            name=self.scenes[0], sizes=dict(zip("TCZYX", self._shape)), dtype=self._dtype,
            pixel_size_um=tuple(self.physical_pixel_sizes),
            time_increment_s=self.time_interval.total_seconds() if self.time_interval else None,
            channels=self._channels(), acquisition_date=_date(self._info.get("RecordingDate")),
            description=self._info.get("Description"),
        )
        ome = build_ome(
            [spec], manufacturer=None if manufacturer in (None, "Generic") else manufacturer,
            objective=ObjectiveSpec(numerical_aperture=na, magnification=power) if (na or power) else None,
            creator=f"microfair {READER_NAME} (h5py {h5py.__version__})",
        )
        for channel, colour in zip(ome.images[0].pixels.channels, self._colours()):
            if colour is not None:
                channel.color = colour
        entries = [OmeMap.M(k=f"level {lvl['level']}", value=f"shape {lvl['shape']} (Z, Y, X)")
                   for lvl in self._pyramid]
        annotations = list(ome.structured_annotations.map_annotations) if ome.structured_annotations else []
        ann_id = f"Annotation:{len(annotations)}"
        annotations.append(MapAnnotation(id=ann_id, namespace=PYRAMID_NAMESPACE, value=OmeMap(ms=entries)))
        ome.images[0].annotation_refs.append(AnnotationRef(id=ann_id))
        ome.structured_annotations = StructuredAnnotations(map_annotations=annotations)
        return ome


def _image_size(channel: h5py.Group, image: h5py.Group | None, stored: tuple[int, ...]) -> tuple[int, ...]:
    """(Z, Y, X) without padding: the level's ``ImageSize{Z,Y,X}``, else ``DataSetInfo/Image`` X/Y/Z, else stored."""
    out = []
    for axis, n in zip("ZYX", stored):
        size = _int(attr_text(channel, f"ImageSize{axis}"))
        if size is None and image is not None:
            size = _int(attr_text(image, axis))
        out.append(size or n)
    return tuple(out)


def _float(text: str | None, *, zero: bool = False) -> float | None:
    """The number in ``text``; 0 means "not recorded" unless ``zero``."""
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and np.isfinite(value) and (zero or value != 0) else None


def _int(text: str | None) -> int | None:
    value = _float(text)
    return int(value) if value is not None and value > 0 and value == int(value) else None


def _date(text: str | None) -> datetime | None:
    if not text:
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None
