"""Why a microscope file cannot be read, in three classes a facility manager can act on.

- ``damaged``: the bytes are wrong (truncated, bad magic, a block that does not decode,
  companion files missing). Re-copy the acquisition from the instrument PC.
- ``unsupported_layout``: the file is intact, but holds something our readers cannot map
  (axes named in the message). Nothing is wrong with the data; a reader needs extending.
- ``no_reader``: no installed reader handles the format; the message names the plugin or
  extra to install.

Only ``damaged`` may say "corrupt". Readers raise the exceptions below (or any other
exception, which :func:`microfair.imaging.reading.classify` maps by type);
:class:`microfair.imaging.UnreadableImage` carries the class to the ledger, the
quarantine ``.reason.json`` and the dashboard.
"""

from __future__ import annotations

from typing import ClassVar

DAMAGED = "damaged"
UNSUPPORTED_LAYOUT = "unsupported_layout"
NO_READER = "no_reader"

#: the class as words, for the reason text people read
WORDS = {DAMAGED: "damaged", UNSUPPORTED_LAYOUT: "unsupported layout", NO_READER: "no reader"}


class ImageReadError(Exception):
    """Base of the errors our readers raise; ``kind`` is one of the three classes."""

    kind: ClassVar[str]


class DamagedImage(ImageReadError, OSError):
    """Truncated, bad magic, undecodable data, or companion files missing."""

    kind = DAMAGED
    summary: ClassVar[str] = "truncated or corrupt"  # the words that open a damaged verdict


class UnsupportedLayout(ImageReadError, ValueError):
    """A valid file whose layout (axes, container) the reader cannot map; name what it is."""

    kind = UNSUPPORTED_LAYOUT


class MissingReader(ImageReadError, ImportError):
    """The format needs a library that is not installed; name it."""

    kind = NO_READER


class MissingCompanionFiles(DamagedImage):
    """The file needs companion files or folders (OIF planes, VSI .ets) that are not beside it.

    Say which folder or file is expected. The acquisition is incomplete, not corrupt."""

    summary = "incomplete"


#: third-party exceptions that carry a class by their type (checked after ours)
_BY_TYPE: tuple[tuple[tuple[type[BaseException], ...], str], ...] = (
    ((ImportError,), NO_READER),
    ((NotImplementedError,), UNSUPPORTED_LAYOUT),
    ((OSError, EOFError), DAMAGED),
)


def classify(err: BaseException) -> tuple[str, bool]:
    """(class, explicit) of a reader's exception, looking through its cause chain.

    ``explicit`` is False when nothing in the chain says what is wrong; such failures
    count as ``damaged`` (a plugin that claims the format could not decode the file)
    unless another reader's failure is explicit.
    """
    import struct
    import zlib

    chain, seen = [], set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append(current)
        current = current.__cause__ or current.__context__
    for e in chain:
        if isinstance(e, ImageReadError):
            return e.kind, True
    for e in chain:
        if isinstance(e, (struct.error, zlib.error, UnicodeDecodeError)):
            return DAMAGED, True
        for types, kind in _BY_TYPE:
            if isinstance(e, types) and not isinstance(e, PermissionError):
                return kind, True
    return DAMAGED, False


def summary(err: BaseException | None) -> str:
    """The words that open a damaged verdict for ``err`` ("truncated or corrupt", "incomplete")."""
    current, seen = err, set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DamagedImage):
            return current.summary
        current = current.__cause__ or current.__context__
    return DamagedImage.summary
