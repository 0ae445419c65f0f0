"""microfair's bioio reader plugin for Leica LIF files, over ``liffile``.

It reads what bioio-lif 2.0.1 cannot: xz/xt frame scans and lambda sweeps. Frame rows
become Y (as in Bio-Formats); λ and Λ sweeps become channels, one per wavelength, labelled
with it (see :mod:`microfair.imaging.leica`). The
original axis of each renamed axis is kept in the xarray attrs (``original_axes``), on
:attr:`Reader.original_axes` and in the OME metadata (a MapAnnotation in namespace
``microfair.org/original-axes``).

The plugin follows bioio's contract: :class:`ReaderMetadata` (entry point group
``bioio.readers``) and :class:`Reader`, a :class:`bioio_base.reader.Reader`.
The lazy path reads one frame per dask chunk through a memory map of the file, so it
never holds a whole image; each chunk opens the file itself (picklable, fork-safe).
"""

from __future__ import annotations

import logging
import math
from datetime import timedelta
from pathlib import Path
from typing import Any

import bioio_base.reader
import bioio_base.reader_metadata
import dask.array as da
import liffile
import numpy as np
import xarray as xr
from bioio_base import exceptions, io
from bioio_base.types import PhysicalPixelSizes
from fsspec.implementations.local import LocalFileSystem
from ome_types import OME

from microfair.imaging.leica import TARGET_ORDER, LifLayoutError, LifScene, describe, tile_count
from microfair.imaging.ome_build import ImageSpec, build_ome

log = logging.getLogger(__name__)

READER_NAME = "microfair-lif"


class ReaderMetadata(bioio_base.reader_metadata.ReaderMetadata):
    """bioio plugin entry: which files we read and which Reader reads them."""

    @staticmethod
    def get_supported_extensions() -> list[str]:
        return [".lif"]

    @staticmethod
    def get_reader() -> type[bioio_base.reader.Reader]:
        return Reader


class LifFrames:
    """Array-like view of one LIF image (file axis order) that reads on indexing.

    dask calls ``__getitem__`` once per chunk; each call memory-maps the image, copies
    the requested block and closes the file. Only the path and index are pickled.
    ``tile`` = (axis, index) shows one tile of a tile scan: that axis is fixed and left out.
    """

    def __init__(self, path: str, index: int, shape: tuple[int, ...], dtype: str,
                 tile: tuple[int, int] | None = None) -> None:
        self.path, self.index, self.tile = path, index, tile
        self.shape, self.dtype, self.ndim = shape, np.dtype(dtype), len(shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        with liffile.LifFile(self.path) as lif:
            data = _pixels(lif, self.index, out="memmap")
            return np.array(data[_with_tile(key, self.tile, self.ndim)], copy=True)


def _with_tile(key: Any, tile: tuple[int, int] | None, ndim: int) -> Any:
    """The index into the file's array for ``key`` into the tile's array (the tile axis fixed)."""
    if tile is None:
        return key
    key = list(key) if isinstance(key, tuple) else [key]
    if Ellipsis in key:
        at = key.index(Ellipsis)
        key[at:at + 1] = [slice(None)] * (ndim - len(key) + 1)
    key += [slice(None)] * (ndim - len(key))
    axis, index = tile
    return tuple(key[:axis] + [index] + key[axis:])


def _pixels(lif: liffile.LifFile, index: int, **kwargs: Any) -> np.ndarray:
    """Pixels of image ``index``; a missing or short data block is reported as truncation."""
    try:
        return lif.images[index].asarray(**kwargs)
    except KeyError as err:
        raise OSError(f"pixel data block {err} of image {index} is missing: the file is truncated") from err
    except ValueError as err:
        if "mmap length" in str(err) or "size" in str(err):
            raise OSError(f"pixel data of image {index} is cut short ({err}): the file is truncated") from err
        raise


class Reader(bioio_base.reader.Reader):
    """Read Leica LIF images, one bioio scene per LIF image.

    Parameters
    ----------
    image: path to a local ``.lif`` file.
    fs_kwargs: passed to fsspec (only local files are supported).
    """

    plugin_name = READER_NAME
    _scenes: tuple[str, ...] | None = None

    @staticmethod
    def _is_supported_image(fs: Any, path: str, **kwargs: Any) -> bool:
        if not isinstance(fs, LocalFileSystem):
            return False
        try:
            with liffile.LifFile(path) as lif:
                return len(lif.images) > 0
        except Exception:  # noqa: BLE001 - any parse failure means "not ours"
            return False

    def __init__(self, image: Any, fs_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self._fs, self._path = io.pathlike_to_fs(image, enforce_exists=True, fs_kwargs=fs_kwargs or {})
        if not isinstance(self._fs, LocalFileSystem):
            raise exceptions.UnsupportedFileFormatError(READER_NAME, self._path, "only local files")
        try:
            with liffile.LifFile(self._path) as lif:
                self._infos: list[LifScene | Exception] = []
                for i, img in enumerate(lif.images):
                    try:  # a tile scan gives one scene per tile
                        tiles = range(tile_count(img)) if tile_count(img) else [None]
                        self._infos.extend(describe(i, img, tile) for tile in tiles)
                    except (LifLayoutError, KeyError, ValueError) as err:
                        self._infos.append(err)
        except Exception as err:
            raise exceptions.UnsupportedFileFormatError(READER_NAME, self._path, str(err)) from err
        if not self._infos:
            raise exceptions.UnsupportedFileFormatError(READER_NAME, self._path, "no images in file")
        names = [(info.name if info.tile is None else f"{info.name} tile {info.tile}")
                 if isinstance(info, LifScene) else f"image {i}" for i, info in enumerate(self._infos)]
        self._scenes = tuple(n if names.count(n) == 1 else f"{n} #{i}" for i, n in enumerate(names))

    @property
    def scenes(self) -> tuple[str, ...]:
        assert self._scenes is not None
        return self._scenes

    @property
    def scene_info(self) -> LifScene:
        """Layout and metadata of the current scene; raises if we cannot map its axes."""
        info = self._infos[self.current_scene_index]
        if isinstance(info, Exception):
            raise exceptions.UnsupportedFileFormatError(
                READER_NAME, self._path, f"scene {self.current_scene!r}: {info}"
            ) from info  # its type says which class of failure it is (errors.classify)
        return info

    @property
    def original_axes(self) -> dict[str, str]:
        """bioio axis -> what the file's axis really was, for renamed axes only."""
        return dict(self.scene_info.mapping.original)

    def _source_array(self) -> LifFrames:
        info = self.scene_info
        tile = (info.tile_axis, info.tile) if info.tile_axis is not None and info.tile is not None else None
        return LifFrames(self._path, info.index, tuple(info.source_sizes.values()), info.dtype, tile)

    def _frame_chunks(self) -> tuple[int, ...]:
        info = self.scene_info
        dims, shape = tuple(info.source_sizes), tuple(info.source_sizes.values())
        spatial = [i for i, d in enumerate(dims) if d not in ("C", "S")][-2:]
        keep = set(spatial) | {i for i, d in enumerate(dims) if d == "S"}
        return tuple(n if i in keep else 1 for i, n in enumerate(shape))

    def _to_xarray(self, data: Any) -> xr.DataArray:
        info = self.scene_info
        mapping = info.mapping
        data = data.transpose(mapping.permutation())
        merged = len(mapping.channel_axes)
        if merged > 1:  # the file's channels and its λ / Λ sweeps become one channel axis (adjacent now)
            first = sorted(mapping.target, key=TARGET_ORDER.index).index("C")
            shape = (*data.shape[:first], math.prod(data.shape[first:first + merged]), *data.shape[first + merged:])
            data = data.reshape(shape, merge_chunks=False) if isinstance(data, da.Array) else data.reshape(shape)
        dims = list(mapping.output_dims)
        present = set(mapping.target)
        # insert the missing axes as length-1 axes (indexing keeps dask chunks as they are)
        data = data[tuple(slice(None) if d in present else None for d in dims)]
        coords: dict[str, Any] = {}
        if info.channels:
            coords["C"] = [c.name or f"Channel:{info.index}:{i}" for i, c in enumerate(info.channels)]
        return xr.DataArray(
            data, dims=dims, coords=coords,
            attrs={"original_axes": dict(mapping.original), "scan_mode": info.scan_mode},
        )

    def _read_delayed(self) -> xr.DataArray:
        source = self._source_array()
        meta = np.empty((0,) * source.ndim, dtype=source.dtype)
        name = f"lif-{Path(self._path).name}-{self.scene_info.index}-{Path(self._path).stat().st_mtime_ns}"
        array = da.from_array(source, chunks=self._frame_chunks(), meta=meta, name=name)
        return self._to_xarray(array)

    def _read_immediate(self) -> xr.DataArray:
        with liffile.LifFile(self._path) as lif:
            array = np.asarray(_pixels(lif, self.scene_info.index))
            if self.scene_info.tile_axis is not None:
                array = np.take(array, self.scene_info.tile, axis=self.scene_info.tile_axis)
        return self._to_xarray(array)

    @property
    def physical_pixel_sizes(self) -> PhysicalPixelSizes:
        z, y, x = self.scene_info.pixel_size_um
        return PhysicalPixelSizes(z, y, x)

    @property
    def time_interval(self) -> timedelta | None:
        step = self.scene_info.time_increment_s
        return timedelta(seconds=step) if step else None

    @property
    def ome_metadata(self) -> OME:
        specs, first = [], None
        for name, info in zip(self.scenes, self._infos):
            if isinstance(info, Exception):
                continue
            first = first or info
            sizes = {k: v for k, v in zip(info.mapping.output_dims,
                                          info.mapping.output_shape(tuple(info.source_sizes.values())))}
            specs.append(ImageSpec(
                name=name, sizes=sizes, dtype=info.dtype, pixel_size_um=info.pixel_size_um,
                time_increment_s=info.time_increment_s, channels=info.channels,
                acquisition_date=info.acquisition_date, original_axes=dict(info.mapping.original),
                description="; ".join(d for d in (f"Leica scan mode {info.scan_mode}" if info.scan_mode else None,
                                                   info.tile_note) if d) or None,
            ))
        return build_ome(
            specs,
            microscope_model=first.microscope_model if first else None,
            manufacturer="Leica Microsystems" if first and first.microscope_model else None,
            objective=first.objective if first else None,
            creator=f"microfair {READER_NAME} (liffile {liffile.__version__})",
        )
