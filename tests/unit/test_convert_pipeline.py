"""The codec pipeline the conversion writes with (``microfair.convert.pipeline``)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import zarr

from microfair.convert.pipeline import ENV, pipeline_name, writing


def test_zarr_python_when_asked_or_for_worker_processes(monkeypatch):
    monkeypatch.setenv(ENV, "zarr")
    assert pipeline_name() == "zarr-python"
    monkeypatch.delenv(ENV)
    assert pipeline_name(native_allowed=False) == "zarr-python"
    expected = "zarrs" if importlib.util.find_spec("zarrs") else "zarr-python"
    assert pipeline_name() == expected


def test_requiring_zarrs_without_it_is_a_clear_error(monkeypatch):
    if importlib.util.find_spec("zarrs") is not None:
        pytest.skip("zarrs is installed here")
    monkeypatch.setenv(ENV, "zarrs")
    with pytest.raises(RuntimeError, match="zarrs package is not installed"):
        pipeline_name()


def test_arrays_opened_inside_write_every_chunk_and_keep_the_config(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, "zarr")
    arr = zarr.create_array(str(tmp_path / "a.zarr"), shape=(8, 8), chunks=(4, 4), dtype="uint16")
    with writing():
        opened = zarr.open_array(str(tmp_path / "a.zarr"), mode="r+")
    assert not zarr.config.get("array.write_empty_chunks")  # the global default is back
    opened[:] = np.zeros((8, 8), dtype=np.uint16)  # all fill value: written anyway
    assert len(list((tmp_path / "a.zarr" / "c").rglob("*"))) >= 4
    arr[:] = 0
