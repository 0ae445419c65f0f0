"""Reading microscope files: one entry point, :func:`open_image`, over bioio's reader plugins.

See docs/imaging.md. Nothing here imports Java; the Bio-Formats fallback is loaded lazily.
"""

from microfair.imaging.reading import (
    READER_OPTIONS,
    ReaderPlugin,
    UnreadableImage,
    candidate_plugins,
    installed_plugins,
    open_image,
    reader_identity,
)

__all__ = [
    "READER_OPTIONS",
    "ReaderPlugin",
    "UnreadableImage",
    "candidate_plugins",
    "installed_plugins",
    "open_image",
    "reader_identity",
]
