"""One verdict from the readers' failures: its class (:mod:`microfair.imaging.errors`) and its words.

:func:`microfair.imaging.reading.open_image` records one :class:`Attempt` per plugin that
claimed the file and failed, and asks :func:`verdict` for the reason and class of the
:class:`~microfair.imaging.UnreadableImage` it raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from microfair.imaging import errors

#: What to install for formats no installed plugin claims (words for messages only, never to choose a reader).
INSTALL_HINTS: dict[str, str] = {
    ".vsi": "bioio-vsi", ".dv": "bioio-dv", ".r3d": "bioio-dv", ".sldy": "bioio-sldy",
    ".png": "bioio-imageio", ".jpg": "bioio-imageio", ".jpeg": "bioio-imageio", ".gif": "bioio-imageio",
    ".oib": "microfair (its microfair-oib reader; reinstall with `make install`)",
    ".oif": "microfair (its microfair-oib reader; reinstall with `make install`)",
    ".ims": "microfair (its microfair-ims reader; reinstall with `make install`)",
}
BIOFORMATS_HINT = ("the Bio-Formats fallback (`make bioformats`, i.e. the extra microfair[bioformats] "
                   "and MICROFAIR_BIOFORMATS_JAR)")


@dataclass(frozen=True)
class Attempt:
    """One plugin's failure on the file, with its class."""

    plugin: str
    error: BaseException
    kind: str
    explicit: bool  # the exception's type said the class (else it counts as damaged)

    @classmethod
    def of(cls, plugin: str, error: BaseException) -> Attempt:
        return cls(plugin, error, *errors.classify(error))

    def text(self) -> str:
        return f"{self.plugin}: {short(self.error)}"


def verdict(label: str, attempts: list[Attempt]) -> tuple[str, str]:
    """(reason, class) from every reader's failure: the best-ranked explicit class wins, else damaged."""
    deciding = next((a for a in attempts if a.explicit), attempts[0])
    detail = "; ".join(a.text() for a in [deciding] + [a for a in attempts if a is not deciding])
    if deciding.kind == errors.UNSUPPORTED_LAYOUT:
        return f"{label} with a layout no reader maps: {detail}", deciding.kind
    if deciding.kind == errors.NO_READER:
        return f"the reader of this {label} needs a library that is not installed: {detail}", deciding.kind
    return f"{errors.summary(deciding.error)} {label}: {detail}", deciding.kind


def install_hint(path: Path, broken: dict[str, str]) -> str:
    """What to install for a file no plugin claims, and which plugins failed to load (``broken``)."""
    name = path.name.lower()
    hint = next((h for ext, h in INSTALL_HINTS.items() if name.endswith(ext)), None)
    text = f"{hint}, or configure {BIOFORMATS_HINT}" if hint else BIOFORMATS_HINT
    if broken:
        text += "; reader plugins that failed to load: " + "; ".join(f"{k} ({v})" for k, v in broken.items())
    return text


def short(err: BaseException) -> str:
    """The library's own message, without bioio's generic advice."""
    text = str(err).strip() or type(err).__name__
    marker = "Readers attempted:"
    if marker in text:
        text = text.split(marker, 1)[1].strip().lstrip("- ").split(": ", 1)[-1]
        text = re.sub(r"^\s*'[^']*'\.?", "", text.split("does not support the image:", 1)[-1])
    return " ".join(text.split())[:400]
