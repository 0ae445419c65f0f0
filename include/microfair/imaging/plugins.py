"""microfair's one bioio plugin: a facade over our per-format reader plugins.

bioio finds readers through the entry point group ``bioio.readers`` and looks each entry
point up as a *distribution* name, so the ``microfair`` distribution can register only
one plugin. This module is that plugin. It lists our per-format plugins in
:data:`SUB_PLUGINS` (each a module with ``ReaderMetadata``, ``Reader`` and
``READER_NAME``, e.g. ``microfair-lif``) and:

- :class:`ReaderMetadata` declares the union of their extensions;
- :class:`Reader` picks the sub-reader that recognises the file by its content
  (``Reader._is_supported_image`` of each sub-reader, which checks magic bytes or
  parses the header), preferring the ones whose extensions match, and returns an
  instance of *that* reader, so ``type(img.reader).plugin_name`` names the format
  reader really used.

:func:`microfair.imaging.reading.installed_plugins` lists the sub-plugins one by one
(through :func:`sub_plugins`), so messages and provenance name ``microfair-oib`` or
``microfair-ims`` rather than ``microfair``.

A sub-plugin whose library is missing is skipped and remembered in
:func:`unavailable_sub_plugins` (its import error names what to install).
To add a format: write ``imaging/<format>_plugin.py`` and add its module here.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

import bioio_base.reader
import bioio_base.reader_metadata
from bioio_base import exceptions, io

log = logging.getLogger(__name__)

READER_NAME = "microfair"

#: Our per-format plugin modules, in the order they are tried.
SUB_PLUGINS: tuple[str, ...] = (
    "microfair.imaging.lif_plugin",
    "microfair.imaging.oib_plugin",
    "microfair.imaging.ims_plugin",
    "microfair.imaging.wsi_plugin",
    "microfair.imaging.vsi_plugin",
    "microfair.imaging.dv_plugin",
)


@dataclass(frozen=True)
class SubPlugin:
    """One of our per-format plugins."""

    name: str  # e.g. "microfair-oib"
    module: ModuleType
    extensions: tuple[str, ...]

    @property
    def metadata(self) -> type[bioio_base.reader_metadata.ReaderMetadata]:
        return self.module.ReaderMetadata

    @property
    def reader(self) -> type[bioio_base.reader.Reader]:
        return self.module.ReaderMetadata.get_reader()


@lru_cache(maxsize=1)
def _load() -> tuple[tuple[SubPlugin, ...], tuple[tuple[str, str], ...]]:
    loaded, missing = [], []
    for module_name in SUB_PLUGINS:
        try:
            module = importlib.import_module(module_name)
            exts = tuple(_normal(e) for e in module.ReaderMetadata.get_supported_extensions())
            name = getattr(module, "READER_NAME", module_name.rsplit(".", 1)[-1])
        except Exception as err:  # noqa: BLE001 - one broken sub-plugin must not hide the others
            log.warning("microfair reader %s is unavailable: %s", module_name, err)
            missing.append((module_name, f"{type(err).__name__}: {err}"))
            continue
        loaded.append(SubPlugin(name, module, exts))
    return tuple(loaded), tuple(missing)


def sub_plugins() -> tuple[SubPlugin, ...]:
    """Our per-format plugins that imported, in :data:`SUB_PLUGINS` order."""
    return _load()[0]


def unavailable_sub_plugins() -> tuple[tuple[str, str], ...]:
    """(module, import error) of the sub-plugins that could not be imported."""
    return _load()[1]


def _normal(ext: str) -> str:
    ext = ext.lower()
    return ext if ext.startswith(".") else f".{ext}"


def choose(fs: Any, path: str) -> SubPlugin | None:
    """The sub-plugin that recognises ``path`` by content: extension matches first, then the rest."""
    name = Path(path).name.lower()
    plugins = sub_plugins()
    by_name = [p for p in plugins if any(name.endswith(e) for e in p.extensions)]
    for plugin in by_name + [p for p in plugins if p not in by_name]:
        try:
            if plugin.reader._is_supported_image(fs, path):
                return plugin
        except Exception as err:  # noqa: BLE001 - a failed check means "not this one"
            log.debug("%s: %s does not recognise it: %s", path, plugin.name, err)
    # nothing recognises the content: the plugin named by the extension says why
    return by_name[0] if by_name else None


def recognise(path: str | Path) -> list[SubPlugin]:
    """Our sub-plugins that recognise the content of the local file ``path`` (whatever its name)."""
    from fsspec.implementations.local import LocalFileSystem

    found = []
    for plugin in sub_plugins():
        try:
            if plugin.reader._is_supported_image(LocalFileSystem(), str(path)):
                found.append(plugin)
        except Exception:  # noqa: BLE001 - a failed check means "not this one"
            continue
    return found


class ReaderMetadata(bioio_base.reader_metadata.ReaderMetadata):
    """bioio plugin entry: every extension one of our sub-plugins reads."""

    @staticmethod
    def get_supported_extensions() -> list[str]:
        return list(dict.fromkeys(e for p in sub_plugins() for e in p.extensions))

    @staticmethod
    def get_reader() -> type[bioio_base.reader.Reader]:
        return Reader


class Reader(bioio_base.reader.Reader):
    """Dispatches to the sub-reader for the file: ``Reader(path)`` returns that reader's instance."""

    plugin_name = READER_NAME

    def __new__(cls, image: Any, fs_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        fs, path = io.pathlike_to_fs(image, enforce_exists=True, fs_kwargs=fs_kwargs or {})
        plugin = choose(fs, path)
        if plugin is None:
            raise exceptions.UnsupportedFileFormatError(READER_NAME, path, "no microfair reader reads this file")
        # an instance of another class: Python does not call our __init__ on it
        return plugin.reader(image, fs_kwargs=fs_kwargs, **kwargs)

    @staticmethod
    def _is_supported_image(fs: Any, path: str, **kwargs: Any) -> bool:
        plugin = choose(fs, path)
        return plugin is not None and bool(plugin.reader._is_supported_image(fs, path, **kwargs))
