"""microfair's reader for cellSens VSI: bioio-vsi, with its companion folder declared and its errors classed.

bioio-vsi (pure Python) reads the pixels; this sub-plugin of our facade adds what the pipeline needs:

* :meth:`ReaderMetadata.companion_paths`: a ``<stem>.vsi`` keeps its pixels in ``_<stem>_/`` beside it
  (``stack<N>/frame_t_*.ets``), so collect copies that folder with the file and the landing scan does
  not offer the ``.ets`` files as acquisitions (:mod:`microfair.companions`);
* bioio-vsi's errors become the three classes of :mod:`microfair.imaging.errors`: a missing ``.ets``
  is :class:`~microfair.imaging.errors.MissingCompanionFiles` naming the folder expected (the
  acquisition is incomplete, not corrupt); a cut or malformed file is *damaged*; a compression,
  pixel type or layout bioio-vsi does not handle is *unsupported layout*; a missing codec extra is
  *no reader*;
* OME metadata (bioio-vsi offers none): channel names with their emission wavelengths, pixel and
  Z step sizes and the acquisition date, as bioio-vsi parsed them from the VSI tree.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import bioio_base.reader
import bioio_base.reader_metadata
import xarray as xr
from bioio_vsi import errors as vsi_errors
from bioio_vsi.reader import Reader as VsiReader
from ome_types import OME

from microfair.companions import missing_message, vsi_folder
from microfair.imaging.errors import DamagedImage, MissingCompanionFiles, MissingReader, UnsupportedLayout
from microfair.imaging.ome_build import ChannelSpec, ImageSpec, build_ome

READER_NAME = "microfair-vsi"

#: bioio-vsi error type -> our class (checked in order; anything else keeps its own type)
_CLASSES: tuple[tuple[type[Exception], type[Exception]], ...] = (
    (vsi_errors.MissingCodecsExtraError, MissingReader),
    ((vsi_errors.UnsupportedCompressionError, vsi_errors.UnsupportedPixelTypeError,
      vsi_errors.UnknownDimensionKindError, vsi_errors.UnsupportedColourSpaceError,
      vsi_errors.UnsupportedTileLayoutError, vsi_errors.UnsupportedFeatureError, vsi_errors.MultiImageError,
      vsi_errors.UnknownUnitError), UnsupportedLayout),
    ((vsi_errors.TruncatedFileError, vsi_errors.InvalidStructureError, vsi_errors.IncompleteTileGridError,
      vsi_errors.DuplicateTileError, vsi_errors.SizeMismatchError, vsi_errors.InvalidMetadataError,
      vsi_errors.UndeclaredCoordinateError, vsi_errors.NoImageError), DamagedImage),
)


class ReaderMetadata(bioio_base.reader_metadata.ReaderMetadata):
    """bioio plugin entry (a sub-plugin of :mod:`microfair.imaging.plugins`)."""

    @staticmethod
    def get_supported_extensions() -> list[str]:
        return [".vsi"]

    @staticmethod
    def get_reader() -> type[bioio_base.reader.Reader]:
        return Reader

    #: a ``<stem>.vsi`` keeps its pixels in ``_<stem>_/`` beside it (collect copies it along)
    companion_paths = staticmethod(vsi_folder)


class Reader(VsiReader):
    """bioio-vsi's reader; its failures raised as our error classes."""

    plugin_name = READER_NAME

    def __init__(self, image: Any, **kwargs: Any) -> None:
        with self._classed(image):
            super().__init__(image, **kwargs)

    @contextlib.contextmanager
    def _classed(self, image: Any = None) -> Iterator[None]:
        try:
            yield
        except vsi_errors.MissingPixelFileError as err:
            path = Path(str(image if image is not None else self._path))
            missing = [c for c in vsi_folder(path) if not c.is_dir()] or vsi_folder(path)
            raise MissingCompanionFiles(f"{missing_message(path, missing)} ({err})") from err
        except vsi_errors.VsiError as err:
            for types, ours in _CLASSES:
                if isinstance(err, types):
                    raise ours(f"{type(err).__name__}: {err}") from err
            raise

    def _ensure_meta(self) -> Any:
        with self._classed():
            return super()._ensure_meta()

    def _read_delayed(self) -> xr.DataArray:
        with self._classed():
            return super()._read_delayed()

    def _read_immediate(self) -> xr.DataArray:
        with self._classed():
            return super()._read_immediate()

    @property
    def ome_metadata(self) -> OME:
        meta = self._ensure_meta()
        channels = next((sorted(slot.channels, key=lambda ch: ch.index) for slot in meta.slots if slot.kind == "C"),
                        [])
        names = list(self.channel_names or [])
        specs = [ChannelSpec(names[i] if i < len(names) else ch.name, emission_nm=ch.emission_nm)
                 for i, ch in enumerate(channels)]
        size = self.physical_pixel_sizes
        when = (datetime.fromtimestamp(meta.acquisition_time, tz=timezone.utc)
                if meta.acquisition_time else None)
        spec = ImageSpec(name=self.scenes[0], sizes=dict(zip(self.dims.order, self.dims.shape)),
                         dtype=str(self.dtype), pixel_size_um=(size.Z, size.Y, size.X), channels=specs,
                         acquisition_date=when, time_increment_s=self.time_interval.total_seconds()
                         if self.time_interval else None)
        return build_ome([spec], creator=f"microfair {READER_NAME} (bioio-vsi)")
