"""What our local-file bioio readers share: the content check and the opening of a local path.

The OIB/OIF and IMS readers (and any reader built on a library that needs a real file) accept only
local files; ``_is_supported_image`` and ``__init__`` of each begin the same way, here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bioio_base import exceptions, io
from fsspec.implementations.local import LocalFileSystem


def recognised_locally(fs: Any, path: str, check: Callable[[str], object]) -> bool:
    """For ``Reader._is_supported_image``: ``path`` is a local file whose content ``check`` accepts.

    An ``OSError`` of ``check`` (unreadable, too short) means "not this format".
    """
    if not isinstance(fs, LocalFileSystem):
        return False
    try:
        return bool(check(path))
    except OSError:
        return False


def open_local(reader_name: str, image: Any, fs_kwargs: dict[str, Any] | None) -> tuple[Any, str]:
    """(file system, path) of ``image``; bioio's UnsupportedFileFormatError unless it is a local file."""
    fs, path = io.pathlike_to_fs(image, enforce_exists=True, fs_kwargs=fs_kwargs or {})
    if not isinstance(fs, LocalFileSystem):
        raise exceptions.UnsupportedFileFormatError(reader_name, path, "only local files")
    return fs, path
