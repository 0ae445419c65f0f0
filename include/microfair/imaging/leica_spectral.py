"""Leica spectral scans: the wavelength of each λ (emission) / Λ (excitation) step, and one channel
per (channel, Λ, λ) combination, labelled with its wavelengths (see :mod:`microfair.imaging.leica`)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from xml.etree import ElementTree

from microfair.imaging.ome_build import ChannelSpec

if TYPE_CHECKING:
    from microfair.imaging.leica import AxisMapping

#: Wavelength sweeps, folded into the channel axis (after the file's own channels, in this order).
SPECTRAL = ("Λ", "λ")
#: LIF DimID of each wavelength sweep
SWEEP_DIM_IDS = {"λ": "5", "Λ": "9"}
#: metres (or other unit) -> nanometres
TO_NM = {"m": 1e9, "mm": 1e6, "um": 1e3, "µm": 1e3, "nm": 1.0}


def sweep_wavelengths_nm(xml: ElementTree.Element, sizes: dict[str, int]) -> dict[str, list[float]]:
    """The wavelength (nm) of each step of the λ / Λ sweeps of one image, from its DimensionDescription."""
    out: dict[str, list[float]] = {}
    for dim in xml.findall("./Data/Image/ImageDescription/Dimensions/DimensionDescription"):
        axis = next((a for a, i in SWEEP_DIM_IDS.items() if dim.get("DimID") == i), None)
        if axis is None or axis not in sizes:
            continue
        n = int(dim.get("NumberOfElements") or 0)
        try:
            origin, length = float(dim.get("Origin") or ""), float(dim.get("Length") or "")
        except ValueError:
            continue
        factor = TO_NM.get((dim.get("Unit") or "").strip(), 1e9 if abs(origin) < 1e-3 else 1.0)
        step = length / (n - 1) if n > 1 else 0.0
        out[axis] = [round((origin + i * step) * factor, 1) for i in range(n)]
    return out


def spectral_channels(base: list[ChannelSpec], mapping: AxisMapping, wavelengths: dict[str, list[float]],
                      sizes: dict[str, int]) -> list[ChannelSpec]:
    """One channel per (channel, Λ, λ) combination, in the order of :attr:`AxisMapping.channel_axes`.

    The label says the wavelengths (``λ 520 nm``; ``Λ 488 nm λ 520 nm``); with several file channels it
    starts with the channel's own name. The λ step is the emission, the Λ step the excitation wavelength.
    """
    sweeps = [a for a in mapping.channel_axes if a in SPECTRAL]
    if not sweeps:
        return base
    steps: list[dict[str, tuple[int, float | None]]] = [{}]
    for axis in sweeps:  # slowest first, so the last sweep varies fastest
        values: list[float | None] = list(wavelengths.get(axis) or [])
        if len(values) != sizes[axis]:  # the XML does not say the wavelengths: number the steps
            values = [None] * sizes[axis]
        steps = [{**s, axis: (i, v)} for s in steps for i, v in enumerate(values)]
    out = []
    for c, channel in enumerate(base or [ChannelSpec(None)]):
        for step in steps:
            words = [f"{a} {v:g} nm" if v is not None else f"{a} step {i + 1}" for a, (i, v) in step.items()]
            prefix = [channel.name or f"C{c}"] if len(base) > 1 else []  # labels stay unique
            out.append(ChannelSpec(
                " ".join(prefix + words),
                emission_nm=step["λ"][1] if "λ" in step else channel.emission_nm,
                excitation_nm=step["Λ"][1] if "Λ" in step else channel.excitation_nm,
            ))
    return out
