"""One byte-unit convention for every output (dashboard, CLI, logs): IEC binary units.

``format_bytes(1_500_000) == "1.4 MiB"``: steps of 1024, named KiB, MiB, GiB, TiB, PiB.
"""

from __future__ import annotations

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def format_bytes(n: int | float | None, *, missing: str = "–") -> str:
    """``n`` bytes in IEC units, one decimal above bytes; ``missing`` when ``n`` is None."""
    if n is None:
        return missing
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


__all__ = ["format_bytes"]
