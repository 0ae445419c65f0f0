"""Which Zarr codec pipeline encodes and writes the chunks, and the array options the engine writes with.

- ``zarrs`` (the Rust codec pipeline for zarr-python) when it is importable: it encodes and writes a shard's
  chunks in one native call on its own thread pool, with ~40 % less CPU than zarr-python's asyncio path for the
  same sharded zstd write (``benchmarks/convert_writers.py``). It is not a dependency of microfair: install it
  beside the venv to use it; ``MICROFAIR_ZARR_PIPELINE=zarr`` turns it off, ``=zarrs`` requires it.
- else zarr-python's own pipeline (numcodecs, which releases the GIL, on the dask threads).

Either way every chunk is written, also one that holds only the fill value (``write_empty_chunks``): checking
each chunk for emptiness costs a full comparison pass, and an empty chunk compresses to a few bytes.
The choice applies to arrays opened inside :func:`writing` (the codec pipeline is fixed when an array is opened).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)

ZARRS = "zarrs.ZarrsCodecPipeline"
ENV = "MICROFAIR_ZARR_PIPELINE"
#: zarr's ``config.set`` restores, on exit, the values it saw on entry: two threads inside it at once can leave the
#: other's value set for the whole process. Every temporary change of zarr's config here holds this lock.
CONFIG_LOCK = threading.RLock()


def pipeline_name(native_allowed: bool = True) -> str:
    """``"zarrs"`` or ``"zarr-python"``: what :func:`writing` will use."""
    wanted = os.environ.get(ENV, "").strip().lower()
    if wanted == "zarrs" and importlib.util.find_spec("zarrs") is None:
        raise RuntimeError(f"{ENV}=zarrs, but the zarrs package is not installed")
    if wanted in ("zarr", "zarr-python") or not native_allowed:
        return "zarr-python"
    return "zarrs" if importlib.util.find_spec("zarrs") is not None else "zarr-python"


@contextmanager
def writing(native_allowed: bool = True) -> Iterator[str]:
    """Open the conversion's arrays inside this block; yields the pipeline's name."""
    import zarr

    name = pipeline_name(native_allowed)
    options: dict[str, object] = {"array.write_empty_chunks": True}
    if name == "zarrs":
        options["codec_pipeline.path"] = ZARRS
    log.debug("Zarr arrays opened with the %s codec pipeline", name)
    with CONFIG_LOCK, zarr.config.set(options):
        yield name
