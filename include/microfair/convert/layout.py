"""The OME-Zarr layout, described once and turned into NGFF metadata by one function.

:class:`ImagePlan` is the single description of one image (axes, units, level shapes,
scales, chunks, codec, channels). :func:`image_model` turns it into an ome-zarr-models
``Image`` (NGFF 0.4 on Zarr v2, or 0.5 on Zarr v3): the multiscales metadata, the omero
channel metadata and the array specs all come from that one function, and the same
models validate the result. The bioformats2raw container around the images (root group,
``OME/`` group with ``series`` and ``METADATA.ome.xml``) is written by :func:`write_container`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import zarr

NgffVersion = Literal["0.4", "0.5"]
AXES = ("t", "c", "z", "y", "x")
AXIS_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
DOWNSAMPLING = {
    "method": "microfair.convert.pyramid.downsample2",
    "description": "2x2 mean in Y and X (odd edges replicated, integers rounded half up); Z, C, T kept",
}


@dataclass
class ChannelPlan:
    label: str
    color: str  # RRGGBB
    window: tuple[float, float, float, float]  # min, max, start, end


@dataclass
class ImagePlan:
    """Everything the NGFF metadata of one image says, in one place."""

    name: str
    dtype: np.dtype
    level_shapes: list[tuple[int, ...]]  # (T, C, Z, Y, X) per level
    scale: dict[str, float]  # level-0 scale per axis (t, z, y, x; c is 1)
    units: dict[str, str | None]
    chunks: tuple[int, ...]  # (T, C, Z, Y, X)
    compressor: str = "zstd"
    compression_level: int = 3
    channels: list[ChannelPlan] = field(default_factory=list)
    default_z: int = 0
    shard_bytes: int = 0  # NGFF 0.5: target bytes per shard (0: unsharded); also sizes the write blocks
    sharded: bool = False  # Zarr v3 sharding codec (NGFF 0.5 only)

    def level_scale(self, level: int) -> list[float]:
        f = 2.0**level
        s = self.scale
        return [s.get("t", 1.0), 1.0, s.get("z", 1.0), s["y"] * f, s["x"] * f]

    def level_translation(self, level: int) -> list[float]:
        """Pixel centres of level k sit (2**k - 1) / 2 level-0 pixels from the origin in Y and X."""
        off = (2.0**level - 1.0) / 2.0
        return [0.0, 0.0, 0.0, self.scale["y"] * off, self.scale["x"] * off]

    def level_chunks(self, level: int) -> tuple[int, ...]:
        shape = self.level_shapes[level]
        return tuple(max(1, min(c, s)) for c, s in zip(self.chunks, shape))

    def level_block(self, level: int) -> tuple[int, ...]:
        """The unit of work and of writing at ``level``: one shard (sharded), else a tile of whole chunks
        of about ``shard_bytes`` (the level's chunk when ``shard_bytes`` is 0)."""
        return shard_shape(self.level_shapes[level], self.level_chunks(level), self.dtype, self.shard_bytes)


def shard_shape(shape: tuple[int, ...], chunks: tuple[int, ...], dtype: np.dtype, target_bytes: int
                ) -> tuple[int, ...]:
    """Whole chunks in Y and X (the shorter side doubled first) up to ``target_bytes``, at most the level.

    A level smaller than the target is one shard per plane; T, C and Z stay as in ``chunks``.
    """
    *lead, cy, cx = chunks
    if target_bytes <= 0:
        return tuple(chunks)
    n = max(1, target_bytes // (math.prod(chunks) * np.dtype(dtype).itemsize))
    ny, nx = math.ceil(shape[-2] / cy), math.ceil(shape[-1] / cx)
    ky = kx = 1
    while True:  # double the shorter side (X on a tie) while the shard stays within the target and the level
        grow_x = kx < nx and min(2 * kx, nx) * ky <= n
        grow_y = ky < ny and kx * min(2 * ky, ny) <= n
        if grow_x and (not grow_y or kx * cx <= ky * cy):
            kx = min(2 * kx, nx)
        elif grow_y:
            ky = min(2 * ky, ny)
        else:
            break
    return (*lead, ky * cy, kx * cx)


def default_window(dtype: np.dtype) -> tuple[float, float, float, float]:
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return (float(info.min), float(info.max), float(info.min), float(info.max))
    return (0.0, 1.0, 0.0, 1.0)


def _codecs_v3(plan: ImagePlan, level: int | None = None) -> list[dict[str, Any]]:
    """The v3 codecs; with sharding, one ``sharding_indexed`` codec around them (index: bytes + crc32c)."""
    inner = _inner_codecs_v3(plan)
    if level is None or not plan.sharded:
        return inner
    return [{"name": "sharding_indexed", "configuration": {
        "chunk_shape": list(plan.level_chunks(level)), "codecs": inner,
        "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}],
        "index_location": "end"}}]


def _inner_codecs_v3(plan: ImagePlan) -> list[dict[str, Any]]:
    codecs: list[dict[str, Any]] = [{"name": "bytes", "configuration": {"endian": "little"}}]
    if plan.compressor == "zstd":
        codecs.append({"name": "zstd", "configuration": {"level": plan.compression_level, "checksum": False}})
    elif plan.compressor == "blosc-lz4":
        codecs.append({"name": "blosc", "configuration": {
            "cname": "lz4", "clevel": min(plan.compression_level, 9),
            "shuffle": "shuffle" if plan.dtype.itemsize > 1 else "bitshuffle",
            "typesize": plan.dtype.itemsize, "blocksize": 0}})
    return codecs


def _compressor_v2(plan: ImagePlan) -> dict[str, Any] | None:
    if plan.compressor == "zstd":
        return {"id": "zstd", "level": plan.compression_level, "checksum": False}
    if plan.compressor == "blosc-lz4":
        return {"id": "blosc", "cname": "lz4", "clevel": min(plan.compression_level, 9),
                "shuffle": 1 if plan.dtype.itemsize > 1 else 2, "blocksize": 0}
    return None


def _fill_value(dtype: np.dtype) -> Any:
    return 0.0 if dtype.kind == "f" else (False if dtype.kind == "b" else 0)


def _omero(plan: ImagePlan) -> dict[str, Any]:
    return {
        "name": plan.name,
        "version": "0.4",
        "channels": [
            {"label": ch.label, "color": ch.color, "active": True, "coefficient": 1.0, "family": "linear",
             "inverted": False,
             "window": {"min": ch.window[0], "max": ch.window[1], "start": ch.window[2], "end": ch.window[3]}}
            for ch in plan.channels
        ],
        "rdefs": {"defaultT": 0, "defaultZ": int(plan.default_z), "model": "color" if len(plan.channels) > 1 else "greyscale"},
    }


def image_model(plan: ImagePlan, version: NgffVersion) -> Any:
    """THE function that builds the NGFF metadata of an image (ome-zarr-models ``Image``)."""
    paths = [str(i) for i in range(len(plan.level_shapes))]
    scales = [plan.level_scale(i) for i in paths_range(plan)]
    translations = [plan.level_translation(i) for i in paths_range(plan)]
    axes_kw = [dict(name=a, type=AXIS_TYPES[a], **({"unit": plan.units.get(a)} if plan.units.get(a) else {}))
               for a in AXES]
    if version == "0.5":
        from ome_zarr_models.v05.axes import Axis
        from ome_zarr_models.v05.image import Image
        from pydantic_zarr.v3 import ArraySpec

        specs = [ArraySpec(
            shape=shape, data_type=str(plan.dtype),
            chunk_grid={"name": "regular", "configuration": {
                "chunk_shape": plan.level_block(i) if plan.sharded else plan.level_chunks(i)}},
            chunk_key_encoding={"name": "default", "configuration": {"separator": "/"}},
            fill_value=_fill_value(plan.dtype), codecs=_codecs_v3(plan, i), dimension_names=AXES, attributes={},
        ) for i, shape in enumerate(plan.level_shapes)]
    else:
        from ome_zarr_models.v04.axes import Axis
        from ome_zarr_models.v04.image import Image
        from pydantic_zarr.v2 import ArraySpec

        specs = [ArraySpec(
            shape=shape, dtype=plan.dtype.str, chunks=plan.level_chunks(i), compressor=_compressor_v2(plan),
            fill_value=_fill_value(plan.dtype), order="C", filters=None, dimension_separator="/", attributes={},
        ) for i, shape in enumerate(plan.level_shapes)]
    image = Image.new(array_specs=specs, paths=paths, axes=[Axis(**kw) for kw in axes_kw], scales=scales,
                      translations=translations, name=plan.name, multiscale_type="mean", metadata=DOWNSAMPLING)
    # omero (transitional) travels beside multiscales; the models keep extra keys and validate 0.4's
    attrs = image.attributes.model_dump(by_alias=True, exclude_none=True)
    if version == "0.5":
        attrs["ome"]["omero"] = _omero(plan)
    else:
        attrs["omero"] = _omero(plan)
    return type(image).model_validate({**image.model_dump(by_alias=True, exclude_none=True), "attributes": attrs})


def paths_range(plan: ImagePlan) -> range:
    return range(len(plan.level_shapes))


def group_attributes(plan: ImagePlan, version: NgffVersion) -> dict[str, Any]:
    """The image group's attributes (from :func:`image_model`), e.g. to refresh windows after the data."""
    return image_model(plan, version).attributes.model_dump(by_alias=True, exclude_none=True)


# --------------------------------------------------------------------------- bioformats2raw container


def zarr_format(version: NgffVersion) -> int:
    return 3 if version == "0.5" else 2


def root_attributes(version: NgffVersion) -> dict[str, Any]:
    if version == "0.5":
        from ome_zarr_models.v05.bioformats2raw import BioFormats2RawAttrs as Attrs5

        return {"ome": Attrs5.model_validate({"bioformats2raw.layout": 3, "version": "0.5"})
                .model_dump(by_alias=True, exclude_none=True)}
    from ome_zarr_models.v04.bioformats2raw import BioFormats2RawAttrs as Attrs4

    return Attrs4.model_validate({"bioformats2raw.layout": 3}).model_dump(by_alias=True, exclude_none=True)


def write_container(root: Path, version: NgffVersion, n_scenes: int, ome_xml: str | None) -> zarr.Group:
    """Root group with ``bioformats2raw.layout: 3`` and ``OME/`` with ``series`` and the OME-XML."""
    fmt = zarr_format(version)
    group = zarr.open_group(str(root), mode="w-", zarr_format=fmt)
    group.attrs.put(root_attributes(version))
    series = [str(i) for i in range(n_scenes)]
    ome = group.create_group("OME")
    ome.attrs.put({"ome": {"version": "0.5", "series": series}} if version == "0.5" else {"series": series})
    if ome_xml is not None:
        (root / "OME" / "METADATA.ome.xml").write_bytes(ome_xml.encode("utf-8"))
    return group


def write_image(root: Path, index: int, plan: ImagePlan, version: NgffVersion, native: bool = True
                ) -> list[zarr.Array]:
    """Create image group ``<index>/`` with its (empty) level arrays; returns the arrays, opened for writing with
    the codec pipeline of :mod:`microfair.convert.pipeline` (``native=False``: zarr-python's, e.g. for worker
    processes that may not have zarrs)."""
    from microfair.convert.pipeline import writing

    model = image_model(plan, version)
    store = zarr.storage.LocalStore(str(root))
    group = model.to_zarr(store, str(index))
    group.attrs.put(model.attributes.model_dump(by_alias=True, exclude_none=True))  # no "unit": null
    with writing(native):
        return [zarr.open_array(store, path=f"{index}/{i}", mode="r+") for i in paths_range(plan)]


def validate(root: Path, version: NgffVersion) -> Any:
    """Validate the whole container with ome-zarr-models; raises on any problem.

    ``open_ome_zarr`` does not try the bioformats2raw model, so the container is validated with
    ``BioFormats2Raw.from_zarr`` (which validates every image group ``0/, 1/, ...`` too), and
    each image listed in ``OME/series`` with ``open_ome_zarr``.
    """
    from ome_zarr_models import open_ome_zarr

    if version == "0.5":
        from ome_zarr_models.v05.bioformats2raw import BioFormats2Raw
        from ome_zarr_models.v05.image import Image
    else:
        from ome_zarr_models.v04.bioformats2raw import BioFormats2Raw
        from ome_zarr_models.v04.image import Image
    group = zarr.open_group(str(root), mode="r", zarr_format=zarr_format(version))
    model = BioFormats2Raw.from_zarr(group)
    ome_attrs = dict(group["OME"].attrs)
    series = (ome_attrs.get("ome") or {}).get("series") if version == "0.5" else ome_attrs.get("series")
    if not series or list(series) != model.image_paths:
        raise ValueError(f"OME/series {series} does not list the images {model.image_paths}")
    for path in series:
        image = open_ome_zarr(group[path], version=version)
        if not isinstance(image, Image):
            raise ValueError(f"{path}/ validated as {type(image).__name__}, not an image")
    return model
