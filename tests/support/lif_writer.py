"""Write small Leica LIF files for tests (liffile has no writer).

The container follows what ``liffile.LifFile`` parses (version 2):

* header: ``<IIBI`` = (0x70, 2 * n + 5, 0x2A, n) then the XML header, n UTF-16-LE characters;
* one memory block per image: ``<IIBQBI`` = (0x70, 0, 0x2A, size, 0x2A, m), the block id in m
  UTF-16-LE characters, then ``size`` bytes of pixels.

Each image's XML says its axes by ``DimensionDescription`` (DimID 1 X, 2 Y, 3 Z, 4 T, 5 λ, 9 Λ;
``BytesInc`` = stride) and its channels by ``ChannelDescription`` (``BytesInc`` = channel stride),
as LAS X writes them. The pixels are written in C order of the axes given, so liffile's
``asarray()`` returns exactly the array passed in.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

DIM_IDS = {"X": 1, "Y": 2, "Z": 3, "T": 4, "λ": 5, "A": 6, "N": 7, "Q": 8, "Λ": 9, "M": 10, "L": 11}


@dataclass
class LifImageSpec:
    """One image: ``data`` with axes ``dims`` (liffile order, slowest first; ``C`` for channels)."""

    name: str
    data: np.ndarray
    dims: tuple[str, ...]
    #: per axis (origin, last) in the axis' unit (metres for X Y Z λ Λ, seconds for T)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    luts: list[str] | None = None
    #: attributes of ATLConfocalSettingDefinition (objective, NA, microscope...)
    settings: dict[str, str] = field(default_factory=dict)
    #: active detectors: (name, dye, emission begin nm, end nm)
    detectors: list[tuple[str, str, float, float]] = field(default_factory=list)


def _dimension(dim: str, n: int, stride: int, ranges: dict[str, tuple[float, float]]) -> str:
    origin, last = ranges.get(dim, (0.0, float(n - 1) * 1e-7 if dim in "XYZ" else 0.0))
    unit = "s" if dim == "T" else "m"
    return (f'<DimensionDescription DimID="{DIM_IDS[dim]}" NumberOfElements="{n}" Origin="{origin:e}" '
            f'Length="{last - origin:e}" Unit="{unit}" BitInc="0" BytesInc="{stride}"/>')


def _image_xml(spec: LifImageSpec, block_id: str) -> str:
    data, dims = spec.data, spec.dims
    assert data.ndim == len(dims), (data.shape, dims)
    strides = dict(zip(dims, (s for s in data.strides)))
    n_channels = data.shape[dims.index("C")] if "C" in dims else 1
    resolution = data.dtype.itemsize * 8
    luts = spec.luts or ["Green", "Red", "Blue", "Gray"] * n_channels
    channel_stride = strides.get("C", 0)
    channels = "".join(
        f'<ChannelDescription DataType="0" ChannelTag="0" Resolution="{resolution}" NameOfMeasuredQuantity="" '
        f'Min="0" Max="{2**resolution - 1}" Unit="" LUTName="{luts[c]}" IsLUTInverted="0" '
        f'BytesInc="{c * channel_stride}" BitInc="0"/>'
        for c in range(n_channels)
    )
    dimensions = "".join(
        _dimension(d, n, strides[d], spec.ranges) for d, n in reversed(list(zip(dims, data.shape))) if d != "C"
    )
    settings = ""
    if spec.settings or spec.detectors:
        attrs = " ".join(f"{k}={quoteattr(v)}" for k, v in spec.settings.items())
        dets = "".join(
            f'<Detector Name={quoteattr(name)} IsActive="1" Channel="{i + 1}"/>' for i, (name, *_r) in
            enumerate(spec.detectors)
        )
        bands = "".join(
            f'<MultiBand Channel="{i + 1}" DyeName={quoteattr(dye)} TargetWaveLengthBegin="{lo}" '
            f'TargetWaveLengthEnd="{hi}"/>' for i, (_n, dye, lo, hi) in enumerate(spec.detectors)
        )
        settings = (f'<Attachment Name="HardwareSetting" Application="LAS AF">'
                    f'<ATLConfocalSettingDefinition {attrs}><DetectorList>{dets}</DetectorList>'
                    f'<Spectro>{bands}</Spectro></ATLConfocalSettingDefinition></Attachment>')
    return (f'<Element Name={quoteattr(spec.name)} Visibility="1" CopyOption="1" UniqueID="u-{block_id}">'
            f'<Data><Image TextDescription=""><ImageDescription><Channels>{channels}</Channels>'
            f'<Dimensions>{dimensions}</Dimensions></ImageDescription>{settings}</Image></Data>'
            f'<Memory Size="{data.nbytes}" MemoryBlockID="{block_id}"/><Children/></Element>')


def write_lif(path: Path, images: list[LifImageSpec], project: str = "microfair-test") -> Path:
    """Write ``images`` to a LIF file at ``path``; returns the path."""
    blocks = [f"MemBlock_{i + 1}" for i in range(len(images))]
    children = "".join(_image_xml(spec, block) for spec, block in zip(images, blocks))
    xml = (f'<LMSDataContainerHeader Version="2"><Element Name={quoteattr(project)} Visibility="1" '
           f'CopyOption="1" UniqueID="root"><Data><Experiment Path="" IsSavedFlag="0"/></Data>'
           f'<Memory Size="0" MemoryBlockID="MemBlock_0"/><Children>{children}</Children></Element>'
           f'</LMSDataContainerHeader>')
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IIBI", 0x70, 2 * len(xml) + 5, 0x2A, len(xml)))
        fh.write(xml.encode("utf-16-le"))
        for block, spec in zip(["MemBlock_0", *blocks], [None, *images]):
            payload = b"" if spec is None else np.ascontiguousarray(spec.data).tobytes()
            fh.write(struct.pack("<IIBQBI", 0x70, 0, 0x2A, len(payload), 0x2A, len(block)))
            fh.write(block.encode("utf-16-le"))
            fh.write(payload)
    return path
