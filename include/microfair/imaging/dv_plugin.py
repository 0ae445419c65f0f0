"""microfair's reader for DeltaVision DV: bioio-dv, with the channel axis labelled and the wavelengths kept.

bioio-dv 1.2 (over ``mrc``) returns its ``CTZYX`` array without a channel coordinate; bioio 3 then
adds a one-element channel coordinate, so every DV file with more than one channel fails to open
("conflicting sizes for dimension 'C'"). This sub-plugin of our facade is bioio-dv's reader plus:

* a channel coordinate: the header's emission wavelength of each channel (``wave1``..``wave5``),
  e.g. ``525 nm``, else ``Channel:0:<i>``;
* OME metadata with those wavelengths (``Channel@EmissionWavelength``) and the voxel size, built by
  :func:`microfair.imaging.ome_build.build_ome` (bioio-dv offers none).
"""

from __future__ import annotations

from typing import Any

import bioio_base.reader
import bioio_base.reader_metadata
import xarray as xr
from bioio_dv.reader import Reader as DvReader
from mrc import DVFile
from ome_types import OME

from microfair.imaging.ome_build import ChannelSpec, ImageSpec, build_ome

READER_NAME = "microfair-dv"


class ReaderMetadata(bioio_base.reader_metadata.ReaderMetadata):
    """bioio plugin entry (a sub-plugin of :mod:`microfair.imaging.plugins`)."""

    @staticmethod
    def get_supported_extensions() -> list[str]:
        return [".dv", ".r3d"]

    @staticmethod
    def get_reader() -> type[bioio_base.reader.Reader]:
        return Reader


def _wavelengths(path: str, n: int) -> list[float | None]:
    with DVFile(path) as dv:
        waves = [getattr(dv.hdr, f"wave{i + 1}", 0) for i in range(min(n, 5))]
    return [float(w) if w else None for w in waves] + [None] * (n - len(waves))


class Reader(DvReader):
    """bioio-dv's reader with a channel coordinate and OME metadata."""

    plugin_name = READER_NAME

    def __init__(self, image: Any, fs_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(image, fs_kwargs=fs_kwargs or {})

    def _labelled(self, xarr: xr.DataArray) -> xr.DataArray:
        n = xarr.sizes.get("C", 1)
        names = [f"{w:g} nm" if w else f"Channel:0:{i}" for i, w in enumerate(_wavelengths(self._path, n))]
        if len(set(names)) < n:  # two channels at one wavelength: keep them apart
            names = [f"{name} #{i}" for i, name in enumerate(names)]
        return xarr.assign_coords(C=names) if "C" in xarr.dims else xarr

    def _read_delayed(self) -> xr.DataArray:
        return self._labelled(super()._read_delayed())

    def _read_immediate(self) -> xr.DataArray:
        return self._labelled(super()._read_immediate())

    @property
    def ome_metadata(self) -> OME:
        with DVFile(self._path) as dv:
            sizes, voxel, dtype = dict(dv.sizes), dv.voxel_size, dv.dtype
        waves = _wavelengths(self._path, sizes.get("C", 1))
        spec = ImageSpec(name=self.scenes[0], sizes=sizes, dtype=str(dtype),
                         pixel_size_um=(voxel.z, voxel.y, voxel.x),
                         channels=[ChannelSpec(name, emission_nm=w)
                                   for name, w in zip(self.channel_names or [], waves)])
        return build_ome([spec], creator=f"microfair {READER_NAME} (bioio-dv, mrc)")
