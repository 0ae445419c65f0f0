"""microfair's bioio reader plugin for Olympus FluoView OIB and OIF files, over ``oiffile``.

An OIB is an OLE2 compound document holding the OIF settings (UTF-16 INI text) and one
TIFF file per plane; an OIF is the same settings as a text file beside a companion folder
``<name>.oif.files`` of TIFF planes. oiffile picks the container by the file name, so we
check the content first: an OIB renamed ``.oif`` (or the reverse) is refused as an
*unsupported layout* that says which container the bytes really are, rather than
misread or called corrupt.

What is read: the pixels (one TIFF plane per dask chunk; each chunk opens the file
itself, so the array pickles), physical sizes from the ``Axis N Parameters Common``
sections, channel names, dyes and wavelengths from ``Channel N Parameters``, the
objective and NA from the planes' ``.pty`` properties, the instrument from
``Version Info``, the acquisition date and the valid bit depth. See docs/imaging.md.
"""

from __future__ import annotations

import logging
import struct
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import bioio_base.reader
import bioio_base.reader_metadata
import dask.array as da
import numpy as np
import oiffile
import xarray as xr
from bioio_base.types import PhysicalPixelSizes
from ome_types import OME
from tifffile import TiffFile

from microfair.companions import oif_folder
from microfair.companions import missing_companions, missing_message
from microfair.imaging.errors import DamagedImage, MissingCompanionFiles, UnsupportedLayout
from microfair.imaging.lazy_index import expand_key
from microfair.imaging.local_files import open_local, recognised_locally
from microfair.imaging.ome_build import ChannelSpec, ImageSpec, ObjectiveSpec, build_ome

log = logging.getLogger(__name__)

READER_NAME = "microfair-oib"

OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
#: bioio axes that an Olympus plane-file axis maps to; any other axis longer than 1 is refused
AXES = {"C": "C", "Z": "Z", "T": "T"}
#: unit name in the OIF -> factor to micrometres (lengths) or seconds (time)
UNITS = {"nm": 1e-3, "um": 1.0, "µm": 1.0, "mm": 1e3, "ms": 1e-3, "s": 1.0}
#: errors that mean the bytes are wrong (what oiffile, olefile-like parsing and tifffile raise)
BAD_BYTES = (OSError, EOFError, ValueError, KeyError, IndexError, struct.error, UnicodeError)


def container(path: str | Path) -> str | None:
    """'oib' (OLE2 compound document), 'oif' (UTF-16 INI text) or None, from the first bytes."""
    with open(path, "rb") as fh:
        head = fh.read(64)
    if head.startswith(OLE2_MAGIC):
        return "oib"
    for bom, codec in ((b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if head.startswith(bom) and head[2:].decode(codec, errors="ignore").lstrip().startswith("["):
            return "oif"
    return None


class ReaderMetadata(bioio_base.reader_metadata.ReaderMetadata):
    """bioio plugin entry: which files we read and which Reader reads them."""

    @staticmethod
    def get_supported_extensions() -> list[str]:
        return [".oib", ".oif"]

    @staticmethod
    def get_reader() -> type[bioio_base.reader.Reader]:
        return Reader

    #: an OIF's planes are in ``<name>.oif.files/`` beside it (collect copies it along); an OIB has none
    companion_paths = staticmethod(oif_folder)


class OibPlanes:
    """Array-like view (file axes + plane axes) that reads the plane files it is indexed with.

    ``files`` is an object array of plane-file names over the file axes (oiffile's series
    order); each call opens the file and reads those planes. Only the path and names are pickled.
    """

    def __init__(self, path: str, files: np.ndarray, plane_shape: tuple[int, ...], dtype: str) -> None:
        self.path, self.files = path, files
        self.shape = tuple(files.shape) + tuple(plane_shape)
        self.dtype, self.ndim = np.dtype(dtype), len(self.shape)
        self._n = files.ndim

    def __getitem__(self, key: Any) -> np.ndarray:
        key = expand_key(key, self.ndim)
        n = self._n
        # grid indices as slices (an integer keeps its axis here and drops it at the end)
        grid = tuple(k if isinstance(k, slice) else slice(int(k) % m, int(k) % m + 1)
                     for k, m in zip(key[:n], self.shape[:n]))
        names = self.files[grid]
        out = np.empty(names.shape + self.shape[n:], dtype=self.dtype)
        with oiffile.OifFile(self.path) as oif:
            for index, name in np.ndenumerate(names):
                out[index] = read_plane(oif, str(name))
        return out[tuple(slice(None) if isinstance(k, slice) else 0 for k in key[:n]) + tuple(key[n:])]


def read_plane(oif: oiffile.OifFile, name: str) -> np.ndarray:
    """One plane file of the OIB/OIF; a missing or short stream is reported as damage."""
    try:
        return oif.asarray(name)
    except BAD_BYTES as err:
        raise DamagedImage(f"plane {name} cannot be read ({type(err).__name__}: {err})") from err


class Reader(bioio_base.reader.Reader):
    """Read an Olympus FluoView OIB or OIF file (one scene).

    Parameters
    ----------
    image: path to a local ``.oib`` or ``.oif`` file.
    fs_kwargs: passed to fsspec (only local files are supported).
    """

    plugin_name = READER_NAME

    @staticmethod
    def _is_supported_image(fs: Any, path: str, **kwargs: Any) -> bool:
        return recognised_locally(fs, path, lambda p: container(p) is not None)

    def __init__(self, image: Any, fs_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self._fs, self._path = open_local(READER_NAME, image, fs_kwargs)
        name = Path(self._path).name
        kind = container(self._path)
        if kind is None:
            raise DamagedImage("neither an OIB (OLE2 compound document) nor an OIF "
                               "(UTF-16 settings text) header: bad magic")
        named = "oif" if name.lower().endswith(".oif") else "oib"
        if kind != named:
            raise UnsupportedLayout(_misnamed(name, kind))
        missing = missing_companions(self._path) if kind == "oif" else []
        if missing:
            raise MissingCompanionFiles(missing_message(self._path, missing))
        try:
            with oiffile.OifFile(self._path) as oif:
                self._read_layout(oif)
        except (DamagedImage, UnsupportedLayout):
            raise
        except BAD_BYTES as err:
            raise DamagedImage(f"the {kind.upper()} container cannot be parsed "
                               f"({type(err).__name__}: {err})") from err

    def _read_layout(self, oif: oiffile.OifFile) -> None:
        _check_complete(oif, self._path)
        if not oif.series:
            raise DamagedImage(f"no TIFF plane files in the {oif.filesystem.name} container")
        series = oif.series[0]
        dims, shape = tuple(series.dims), tuple(series.shape)
        extra = {d: n for d, n in zip(dims, shape) if d not in AXES and n > 1}
        if extra:
            raise UnsupportedLayout(
                f"plane-file axes {', '.join(f'{d} ({n})' for d, n in extra.items())} "
                "cannot be mapped to T, C, Z (only C, Z and T are read)")
        files = np.empty(shape, dtype=object)
        for file_name, index in zip(series._files, series.indices):
            files[tuple(index)] = file_name
        if any(f is None for f in files.flat):
            raise DamagedImage(f"{series.files_missing} plane file(s) missing")
        first = files.flat[0]
        with TiffFile(oif.open_file(first), name=first) as tif:
            page = tif.pages.first
            plane_shape, dtype = tuple(page.shape), page.dtype.name
        if len(plane_shape) not in (2, 3):
            raise UnsupportedLayout(f"plane {first} has shape {plane_shape}, "
                                    "expected (Y, X) or (Y, X, samples)")
        self._file_axes, self._files, self._plane = dims, files, plane_shape
        self._dtype = dtype
        self._settings = oif.mainfile
        self._properties = _plane_properties(oif, first)

    @property
    def scenes(self) -> tuple[str, ...]:
        return (self._image_name(),)

    def _image_name(self) -> str:
        info = self._settings.get("File Info", {})
        return str(info.get("DataName") or Path(self._path).stem)

    def _sizes(self) -> dict[str, int]:
        sizes = {d: 1 for d in "TCZ"}
        sizes.update({AXES[d]: n for d, n in zip(self._file_axes, self._files.shape) if d in AXES})
        sizes["Y"], sizes["X"] = self._plane[0], self._plane[1]
        if len(self._plane) == 3:
            sizes["S"] = self._plane[2]
        return sizes

    def _to_xarray(self, data: Any) -> xr.DataArray:
        # source axes: file-grid axes (series order) then Y, X[, S]; target T C Z Y X [S]
        source = [AXES.get(d, d) for d in self._file_axes] + ["Y", "X"] + (["S"] if len(self._plane) == 3 else [])
        for axis in "TCZ":
            if axis not in source:
                data, source = data[None], [axis] + source
        dropped = [i for i, d in enumerate(source) if d not in "TCZYXS"]
        if dropped:  # length-1 axes of other kinds (angle, lambda ...)
            data = data[tuple(0 if i in dropped else slice(None) for i in range(len(source)))]
            source = [d for d in source if d in "TCZYXS"]
        target = [d for d in "TCZYXS" if d in source]
        data = data.transpose([source.index(d) for d in target])
        names = [c.name or f"Channel:0:{i}" for i, c in enumerate(self._channels())]
        coords = {"C": names} if len(names) == data.shape[target.index("C")] else {}
        return xr.DataArray(data, dims=target, coords=coords)

    def _read_delayed(self) -> xr.DataArray:
        source = OibPlanes(self._path, self._files, self._plane, self._dtype)
        chunks = (1,) * self._files.ndim + tuple(self._plane)
        meta = np.empty((0,) * source.ndim, dtype=source.dtype)
        name = f"oib-{Path(self._path).name}-{Path(self._path).stat().st_mtime_ns}"
        return self._to_xarray(da.from_array(source, chunks=chunks, meta=meta, name=name))

    def _read_immediate(self) -> xr.DataArray:
        source = OibPlanes(self._path, self._files, self._plane, self._dtype)
        return self._to_xarray(source[...])

    # ---- metadata -------------------------------------------------------------------

    def _axis(self, code: str) -> dict[str, Any]:
        for key, section in self._settings.items():
            if key.startswith("Axis ") and key.endswith("Parameters Common") and isinstance(section, dict):
                if str(section.get("AxisCode", "")).strip('"') == code:
                    return section
        return {}

    def _step(self, code: str, size: int) -> float | None:
        """Spacing of pixel centres along ``code`` (µm, or s for T): (end - start) / (n - 1)."""
        axis = self._axis(code)
        factor = UNITS.get(str(axis.get("UnitName", "")).strip('"'))
        if size < 2 or factor is None:
            return None
        try:
            step = abs(float(axis["EndPosition"]) - float(axis["StartPosition"])) / (size - 1)
        except (KeyError, TypeError, ValueError):
            return None
        return step * factor if step > 0 else None

    @property
    def physical_pixel_sizes(self) -> PhysicalPixelSizes:
        s = self._sizes()
        return PhysicalPixelSizes(self._step("Z", s["Z"]), self._step("Y", s["Y"]), self._step("X", s["X"]))

    @property
    def time_interval(self) -> timedelta | None:
        step = self._step("T", self._sizes()["T"])
        return timedelta(seconds=step) if step else None

    def _channels(self) -> list[ChannelSpec]:
        out = []
        for i in range(self._sizes()["C"]):
            section = self._settings.get(f"Channel {i + 1} Parameters", {})
            name, dye = _text(section.get("CH Name")), self._dye(i)
            if dye and dye != name:
                name = f"{name} ({dye})" if name else dye
            out.append(ChannelSpec(name, _wavelength(section.get("EmissionWavelength")),
                                   _wavelength(section.get("ExcitationWavelength"))))
        return out

    def _dye(self, channel: int) -> str | None:
        dye = _text(self._settings.get(f"Channel {channel + 1} Parameters", {}).get("DyeName"))
        return dye if dye and dye.lower() != "none" else None

    def _objective(self) -> ObjectiveSpec | None:
        acq = self._properties.get("Acquisition Parameters Common", {})
        model = _text(acq.get("ObjectiveLens Name"))
        na, mag = _number(acq.get("ObjectiveLens NAValue")), _number(acq.get("Magnification"))
        if not (model or na or mag):
            return None
        model = " ".join(model.split()) if model else None
        return ObjectiveSpec(model=model, numerical_aperture=na, magnification=mag, immersion=_immersion(model))

    @property
    def ome_metadata(self) -> OME:
        version = self._settings.get("Version Info", {})
        acq = self._settings.get("Acquisition Parameters Common", {})
        spec = ImageSpec(
            name=self._image_name(), sizes=self._sizes(), dtype=self._dtype,
            pixel_size_um=tuple(self.physical_pixel_sizes),
            time_increment_s=self.time_interval.total_seconds() if self.time_interval else None,
            channels=self._channels(), acquisition_date=_date(acq.get("ImageCaputreDate")),
            description=_text(self._settings.get("File Info", {}).get("UserComment")),
        )
        ome = build_ome(
            [spec], microscope_model=_text(version.get("SystemName")), manufacturer="Olympus",
            objective=self._objective(),
            creator=f"microfair {READER_NAME} (oiffile {oiffile.__version__})",
        )
        for i, channel in enumerate(ome.images[0].pixels.channels):
            channel.fluor = self._dye(i)
        bits = _number(self._settings.get("Reference Image Parameter", {}).get("ValidBitCounts"))
        if bits and 0 < bits <= 8 * np.dtype(self._dtype).itemsize:
            ome.images[0].pixels.significant_bits = int(bits)
        return ome


def _check_complete(oif: oiffile.OifFile, path: str) -> None:
    """An OIB whose sector table uses sectors past the end of the file is truncated.

    Checked up front because oiffile reads a stream cut short without complaint when the
    missing sectors hold something other than pixels (a thumbnail, a LUT); any cut is damage.
    """
    com = getattr(oif.filesystem, "com", None)
    fat, sector = getattr(com, "_fat", None), getattr(com, "sec_size", None)
    if not fat or not sector:
        return
    used = [i for i, entry in enumerate(fat) if entry != oiffile.CompoundFile.FREESECT]
    needed = (max(used) + 2) * sector if used else 0  # the header takes the first sector's place
    size = Path(path).stat().st_size
    if size < needed:
        raise DamagedImage(f"the file is {size} bytes, but its sector table uses {needed}: truncated")


def _plane_properties(oif: oiffile.OifFile, plane: str) -> dict[str, Any]:
    """The ``.pty`` settings beside a plane (objective, NA ...); empty if there are none."""
    name = Path(plane).name.rsplit(".", 1)[0] + ".pty"
    try:
        return dict(oiffile.SettingsFile(oif.open_file(name), name))
    except BAD_BYTES as err:
        log.info("%s: no plane properties %s (%s)", oif.filename, name, err)
        return {}


def _misnamed(name: str, kind: str) -> str:
    if kind == "oib":
        return ("the content is an Olympus OIB (an OLE2 compound document with its planes inside), "
                "but the name ends in .oif (a settings text file beside a companion folder); "
                "rename it to .oib")
    return ("the content is an Olympus OIF settings text file (its planes live in a companion folder "
            "<original name>.oif.files), but the name ends in .oib; rename it back to .oif, beside its folder")


#: immersion tokens in Olympus objective names ("UPLSAPO 60X O NA:1.35", "UPLSAPO 30X SIL")
OLYMPUS_IMMERSION = {"O": "oil", "OIL": "oil", "W": "water", "WI": "water", "SIL": "sil", "GLY": "glycerol"}


def _immersion(model: str | None) -> str | None:
    """The immersion an Olympus objective name states, as a word ome_build maps; None if it states none."""
    tokens = (model or "").upper().replace("NA:", " ").split()
    return next((OLYMPUS_IMMERSION[t] for t in tokens if t in OLYMPUS_IMMERSION), None)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip().strip('"').strip()
    return text or None


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _wavelength(value: Any) -> float | None:
    return _number(value)  # 0 means "not recorded"


def _date(value: Any) -> datetime | None:
    text = _text(value)
    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S") if text else None
    except ValueError:
        return None
