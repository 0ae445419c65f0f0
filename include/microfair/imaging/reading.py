"""Open any microscope file through bioio's reader plugins, or say clearly why not.

:func:`open_image` never looks at file extensions itself: every installed bioio plugin
declares the extensions it reads, and we try the plugins that claim the file, in order:

1. our own plugins first (``microfair-lif`` reads every LIF, so all LIF files of a
   facility get the same axis mapping and metadata, whether or not bioio-lif could read
   them), then bioio's usual order (longest matching extension, most specific plugin);
2. each candidate must open the file *and* read its last pixel through the lazy path
   (this is what catches truncated files, whose header parses fine);
3. only when *no* installed plugin claims the file and Bio-Formats is configured
   (``MICROFAIR_BIOFORMATS_JAR``), Bio-Formats reads it (:mod:`microfair.imaging.bioformats`).
   A file that a plugin claims but cannot read is reported as damaged, never handed to
   Bio-Formats, which reads truncated files without complaint.

Known plugin bugs are worked around here, keyed by plugin name (see ``READER_OPTIONS``).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points, packages_distributions, version
from pathlib import Path
from typing import Any

from bioio import BioImage
from bioio_base.exceptions import UnsupportedFileFormatError

from microfair.imaging import errors
from microfair.imaging.verdicts import Attempt, install_hint, verdict
from microfair.imaging.verdicts import short as _short

log = logging.getLogger(__name__)

OUR_DISTRIBUTION = "microfair"

#: Reader keyword arguments that work around known plugin bugs, keyed by plugin name.
READER_OPTIONS: dict[str, dict[str, Any]] = {
    # bioio-czi 3.0.1 (aicspylibczi mode): the lazy path copies sample 0 into all three
    # samples of RGB CZIs unless the samples axis "A" is a chunk axis.
    "bioio-czi": {"chunk_dims": ["Y", "X", "A"]},
    # one plane per chunk (their default is a whole ZYX stack, so memory would grow with the stack)
    "bioio-ome-tiff": {"chunk_dims": ["Y", "X"]},
    "bioio-tifffile": {"chunk_dims": ["Y", "X"]},
}

#: Plugins that must not be picked by extension (they need set-up first; tried last).
DEFERRED_PLUGINS = {"bioio-bioformats"}


class UnreadableImage(Exception):
    """No reader could read the file; ``reason`` says why, for a facility manager.

    ``kind`` is the class of the failure (:mod:`microfair.imaging.errors`): ``damaged``,
    ``unsupported_layout`` or ``no_reader``; ``str()`` starts with it as a word.
    """

    def __init__(self, path: str | Path, reason: str, kind: str = errors.DAMAGED) -> None:
        self.path = Path(path)
        self.reason = reason
        self.kind = kind
        super().__init__(f"{self.path.name}: {errors.WORDS[kind]} — {reason}")


@dataclass(frozen=True)
class ReaderPlugin:
    """One installed bioio reader plugin."""

    name: str
    version: str | None
    distribution: str | None
    extensions: tuple[str, ...]
    metadata: Any  # the plugin's ReaderMetadata class

    def reader(self) -> type:
        return self.metadata.get_reader()


#: plugins (entry point or sub-plugin name) that failed to load -> why; named in "no reader" verdicts
_BROKEN: dict[str, str] = {}


@lru_cache(maxsize=1)
def installed_plugins() -> tuple[ReaderPlugin, ...]:
    """Every bioio reader plugin that loads; a broken one is logged, skipped and remembered."""
    found = []
    _BROKEN.clear()
    for ep in entry_points(group="bioio.readers"):
        try:
            module = ep.load()
            if hasattr(module, "sub_plugins"):  # our facade: list each format reader by its own name
                found.extend(ReaderPlugin(p.name, ep.dist.version if ep.dist else None,
                                          ep.dist.name if ep.dist else None, p.extensions, p.metadata)
                             for p in module.sub_plugins())
                _BROKEN.update(module.unavailable_sub_plugins())
                continue
            meta = module.ReaderMetadata
            exts = tuple(
                e.lower() if e.startswith(".") else f".{e.lower()}"
                for e in meta.get_supported_extensions()
            )
        except Exception as err:  # noqa: BLE001 - one broken plugin must not stop the others
            log.warning("bioio reader plugin %s could not be loaded and is skipped: %s", ep.name, err)
            _BROKEN[ep.name] = f"{type(err).__name__}: {err}"
            continue
        dist = ep.dist.name if ep.dist is not None else None
        ver = ep.dist.version if ep.dist is not None else None
        found.append(ReaderPlugin(ep.name, ver, dist, exts, meta))
    return tuple(found)


def candidate_plugins(path: str | Path) -> list[ReaderPlugin]:
    """Plugins that claim ``path`` by their declared extensions, best first."""
    name = Path(path).name.lower()
    scored = []
    for plugin in installed_plugins():
        if plugin.name in DEFERRED_PLUGINS:
            continue
        matched = [e for e in plugin.extensions if name.endswith(e)]
        directory = Path(path).is_dir() and _supports_directories(plugin)
        if not matched and not directory:
            continue
        longest = max((len(e) for e in matched), default=0)
        ours = plugin.distribution == OUR_DISTRIBUTION
        scored.append(((not ours, -longest, len(plugin.extensions), plugin.name.lower()), plugin))
    return [p for _, p in sorted(scored, key=lambda item: item[0])]


def _supports_directories(plugin: ReaderPlugin) -> bool:
    check = getattr(plugin.metadata, "supports_directory_images", None)
    try:
        return bool(check()) if check is not None else False
    except Exception:  # noqa: BLE001
        return False


def reader_identity(img: BioImage) -> tuple[str, str | None]:
    """(plugin name, version) of the reader behind ``img``, e.g. ``("bioio-czi", "3.0.1")``."""
    module = type(img.reader).__module__
    top = module.split(".")[0]
    for plugin in installed_plugins():
        if getattr(plugin.metadata, "__module__", "").split(".")[0] == top:
            return getattr(type(img.reader), "plugin_name", None) or plugin.name, plugin.version
    dists = packages_distributions().get(top, [])
    if dists:
        return dists[0], version(dists[0])
    return top, None


def open_image(path: str | Path, *, scene: int | str | None = None, probe: bool = True) -> BioImage:
    """Open a microscope file with the first bioio plugin that can really read it.

    Parameters
    ----------
    path: the file (or directory image, e.g. OME-Zarr).
    scene: select this scene (index or name) before returning; default the first.
    probe: read the last pixel of the selected scene and of the last scene through the
        lazy path, to catch truncated files (costs one chunk each, typically one plane).

    Raises
    ------
    UnreadableImage: empty, missing, truncated, corrupt or unsupported file; its ``kind``
        says which of the three classes of :mod:`microfair.imaging.errors` it is.
    """
    path = Path(path)
    if not path.exists():
        raise UnreadableImage(path, "file not found (the raw copy is missing)")
    if path.is_file() and path.stat().st_size == 0:
        raise UnreadableImage(path, "empty file (0 bytes): the copy or the acquisition did not finish")
    label = _format_label(path)
    attempts: list[Attempt] = []
    for plugin in candidate_plugins(path):
        try:
            img = _open_with(plugin, path)
        except Exception as err:  # noqa: BLE001 - every failure is reported to the caller
            attempts.append(Attempt.of(plugin.name, err))
            log.info("%s: reader %s cannot read it: %s", path.name, plugin.name, _short(err))
            continue
        try:
            _select_and_probe(img, scene, probe)
        except _NoSuchScene as err:
            raise UnreadableImage(path, str(err), errors.UNSUPPORTED_LAYOUT) from err
        except Exception as err:  # noqa: BLE001
            attempts.append(Attempt.of(plugin.name, err))
            log.info("%s: reader %s cannot read it: %s", path.name, plugin.name, _short(err))
            continue
        log.info("%s: read with %s", path.name, plugin.name)
        return img
    if attempts:
        # a plugin for this format exists and failed. Bio-Formats is not asked, because it
        # may read a truncated file without complaint.
        reason, kind = verdict(label, attempts)
        if kind == errors.DAMAGED and path.is_file():
            reason, kind = _misnamed(path, label, scene) or (reason, kind)
        raise UnreadableImage(path, reason, kind)
    from microfair.imaging import bioformats  # lazy: never start a JVM unless needed

    if not bioformats.is_configured():
        raise UnreadableImage(path, f"no reader supports this file ({label}); install {_install_hint(path)}",
                              errors.NO_READER)
    try:
        img = BioImage(path, reader=bioformats.reader_class())
        _select_and_probe(img, scene, probe)
    except Exception as err:  # noqa: BLE001
        raise UnreadableImage(path, f"no reader supports this file ({label}); "
                              f"Bio-Formats: {_short(err)}", errors.NO_READER) from err
    log.info("%s: read with Bio-Formats (no bioio plugin reads this format)", path.name)
    return img


def _open_with(plugin: ReaderPlugin, path: Path) -> BioImage:
    """BioImage over ``plugin``; a failed construction re-raises the reader's own exception."""
    options = copy.deepcopy(READER_OPTIONS.get(plugin.name, {}))  # readers mutate them
    try:
        return BioImage(path, reader=plugin.reader(), **copy.deepcopy(options))
    except UnsupportedFileFormatError as exc:
        wrapped = exc
    # bioio wrapped the reader's exception in its own message; construct once more, bare, to
    # let what the reader really said propagate (its type carries the class of the failure)
    plugin.reader()(path, **options)
    raise wrapped


def _misnamed(path: Path, label: str, scene: int | str | None) -> tuple[str, str] | None:
    """(reason, unsupported_layout) when one of our readers fully reads the bytes although the name
    says another format: the file is intact, only named wrongly (an IMS saved as ``.oib``)."""
    from microfair.imaging import plugins

    name = path.name.lower()
    for plugin in plugins.recognise(path):
        if any(name.endswith(e) for e in plugin.extensions):
            continue  # it claimed the file by its name already, and failed
        try:
            _select_and_probe(BioImage(path, reader=plugin.reader), scene, True)
        except Exception as err:  # noqa: BLE001 - then the bytes are not that format either
            log.info("%s: %s recognises the content but cannot read it: %s", path.name, plugin.name, _short(err))
            continue
        return (f"the name ends in {path.suffix}, but the content is what {plugin.name} reads "
                f"({', '.join(plugin.extensions)}): the file is intact, only named wrongly; "
                f"rename it to {plugin.extensions[0]}", errors.UNSUPPORTED_LAYOUT)
    return None


def _install_hint(path: Path) -> str:
    installed_plugins()  # fills _BROKEN
    return install_hint(path, _BROKEN)


class _NoSuchScene(IndexError):
    pass


def _select_and_probe(img: BioImage, scene: int | str | None, probe: bool) -> None:
    if scene is not None:
        if isinstance(scene, int) and not 0 <= scene < len(img.scenes):
            raise _NoSuchScene(f"scene {scene} does not exist (the file has {len(img.scenes)})")
        img.set_scene(scene)
    _ = img.dims  # parses the header of the selected scene
    if not probe:
        return
    selected = img.current_scene
    # the selected scene and the last one: a truncated file loses its end first
    for name in dict.fromkeys([img.scenes[-1], selected]):
        img.set_scene(name)
        lazy = img.dask_data
        lazy[(-1,) * lazy.ndim].compute()


def _format_label(path: Path) -> str:
    """Words for messages only ('CZI file'); never used to choose a reader."""
    suffix = path.suffix.lstrip(".").upper()
    return f"{suffix} file" if suffix else "file"
