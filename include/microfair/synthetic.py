"""Synthetic microscope files for the demo and the tests: textured, not zeros.

OME-TIFF through tifffile, CZI through pylibczirw (both write real vendor-format
files that the bioio plugins read back).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def textured_stack(shape: tuple[int, ...], dtype: str = "uint16", seed: int = 0, *, background: float = 0.05,
                   peak: float = 0.6) -> np.ndarray:
    """Blurred blobs on a dim background with Poisson-like noise, shape (..., Y, X), scaled to ``dtype``."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    *lead, y, x = shape
    planes = int(np.prod(lead)) if lead else 1
    out = np.empty((planes, y, x), dtype=np.float32)
    for i in range(planes):
        field = np.zeros((y, x), dtype=np.float32)
        n = max(4, (y * x) // 2000)
        field[rng.integers(0, y, n), rng.integers(0, x, n)] = 1.0
        field = ndimage.gaussian_filter(field, sigma=max(1.5, min(y, x) / 80))
        field = field / (field.max() or 1.0)
        out[i] = background + (peak - background) * field
    if np.issubdtype(np.dtype(dtype), np.integer):
        top = np.iinfo(dtype).max
        counts = rng.poisson(out * 1000) / 1000.0
        return np.clip(counts * top, 0, top).astype(dtype).reshape(shape)
    return (out + rng.normal(0, 0.01, out.shape)).astype(dtype).reshape(shape)


def write_ome_tiff(path: Path, data: np.ndarray, *, axes: str = "CZYX", pixel_size_um: float = 0.2,
                   z_step_um: float = 1.0, channels: list[str] | None = None) -> Path:
    import tifffile

    meta: dict[str, object] = {"axes": axes, "PhysicalSizeX": pixel_size_um, "PhysicalSizeY": pixel_size_um,
                               "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm"}
    if "Z" in axes:
        meta.update(PhysicalSizeZ=z_step_um, PhysicalSizeZUnit="µm")
    if channels and "C" in axes:
        meta["Channel"] = {"Name": channels}
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, data, ome=True, metadata=meta, photometric="minisblack")
    return path


def write_czi(path: Path, data: np.ndarray) -> Path:
    """Write a (C, Z, Y, X) stack as a CZI file with pylibczirw."""
    from pylibCZIrw import czi as pyczi

    path.parent.mkdir(parents=True, exist_ok=True)
    c_n, z_n = data.shape[:2]
    with pyczi.create_czi(str(path), exist_ok=True) as doc:
        for c in range(c_n):
            for z in range(z_n):
                doc.write(data=data[c, z], plane={"C": c, "Z": z, "T": 0})
    return path
