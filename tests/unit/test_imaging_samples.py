"""Synthetic microscope files shared by the imaging and metadata tests (no tests here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile


def ome_tiff(path: Path) -> np.ndarray:
    """A 2-time-point, 2-channel, 3-plane OME-TIFF with pixel sizes and channel names."""
    data = np.random.default_rng(1).integers(0, 4000, (2, 2, 3, 32, 48), dtype=np.uint16)
    tifffile.imwrite(
        path, data, ome=True,
        metadata={
            "axes": "TCZYX", "PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25, "PhysicalSizeZ": 1.5,
            "TimeIncrement": 30.0, "Channel": {"Name": ["DAPI", "GFP"]},
        },
    )
    return data


def czi(path: Path, *, rgb: bool = False) -> np.ndarray:
    """A CZI with 2 time points and 3 planes (grey 2 channels, or one RGB channel)."""
    from pylibCZIrw import czi as pyczi

    rng = np.random.default_rng(2)
    shape = (2, 1, 3, 40, 56, 3) if rgb else (2, 2, 3, 40, 56)
    data = rng.integers(0, 255 if rgb else 60000, shape, dtype=np.uint8 if rgb else np.uint16)
    with pyczi.create_czi(str(path), exist_ok=True) as out:
        for t in range(shape[0]):
            for c in range(shape[1]):
                for z in range(shape[2]):
                    out.write(data=data[t, c, z], plane={"T": t, "C": c, "Z": z})
        names = {0: "Brightfield"} if rgb else {0: "DAPI", 1: "GFP"}
        out.write_metadata(document_name=path.stem, channel_names=names,
                           scale_x=0.5e-6, scale_y=0.5e-6, scale_z=2e-6)
    return data
