"""Conversion to OME-Zarr (NGFF 0.5 on Zarr v3, or 0.4 on Zarr v2) in one pass, with QC.

See docs/convert-qc.md. Entry point: :func:`convert_to_zarr`.
"""

from microfair.convert.writer import ConversionError, ConversionResult, SceneResult, convert_to_zarr, stale_temporaries

__all__ = ["ConversionError", "ConversionResult", "SceneResult", "convert_to_zarr", "stale_temporaries"]
