"""Index helpers for our readers' array-like views (what dask passes to ``__getitem__``)."""

from __future__ import annotations

from typing import Any


def expand_key(key: Any, ndim: int) -> tuple[Any, ...]:
    """``key`` as a tuple of exactly ``ndim`` integers or slices (``...`` and missing axes become ``:``)."""
    key = key if isinstance(key, tuple) else (key,)
    if any(k is Ellipsis for k in key):
        at = next(i for i, k in enumerate(key) if k is Ellipsis)
        rest = [k for k in key if k is not Ellipsis]
        key = tuple(rest[:at]) + (slice(None),) * (ndim - len(rest)) + tuple(rest[at:])
    if len(key) > ndim or any(k is None for k in key):
        raise IndexError(f"index {key!r} does not fit an array of {ndim} axes")
    return tuple(key) + (slice(None),) * (ndim - len(key))
