"""QC metrics as pure numpy functions over one block of pixels, and how partial results combine.

Everything here works on one chunk at a time and produces *sums* (counts, sums of squares),
so that the statistics of a whole image are the sum of the statistics of its chunks: dask
(or a plain loop) can combine them in any order, and the pixels are read once.

Intensity keys
    To histogram any dtype in one pass without knowing its range beforehand, each value is
    mapped to an integer *key* by an order-preserving function (:func:`intensity_keys`):

    * 8-bit: the value itself (256 keys); 16-bit: the value itself (65,536 keys) — exact;
    * 32/64-bit integers: the top 16 bits of the offset value (65,536 keys, 2**16 values each);
    * floats: the top 16 bits of the order-preserving bit pattern of the float32 value, a
      logarithmic scale with 7 mantissa bits (relative bin width under 0.8 %). NaN is left out
      and counted apart.

    Percentiles, min/max-free histograms and the noise-vs-intensity curve are all built on these
    keys; :func:`key_values` maps keys back to intensities.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: Percentile (in %) used as "background" level and as "brightest part" level for the SNR.
BACKGROUND_PERCENTILE = 10.0
SIGNAL_PERCENTILE = 99.9
#: Noise pooled from intensities at or below this percentile (background) / at or above (signal).
BACKGROUND_POOL_PERCENTILE = 20.0
SIGNAL_POOL_PERCENTILE = 99.0
#: Standard normal quantiles of the two percentiles above (noise correction of the levels).
Z_BACKGROUND = 1.2816  # Phi^-1(0.90): P10 = mean - 1.28 sigma
Z_SIGNAL = 3.0902  # Phi^-1(0.999): P99.9 = mean + 3.09 sigma
#: Percentiles bounding the "used" intensity range (dynamic range, thumbnail contrast).
LOW_PERCENTILE = 0.1
HIGH_PERCENTILE = 99.9

#: Bins of |second difference| in the noise histogram (log scale, see :func:`difference_bins`).
D_BINS = 64
#: The noise histogram samples every n-th row of a block (still ~65,000 samples per 512x512 tile).
NOISE_ROW_STEP = 4
#: |a - 2b + c| of pure Gaussian noise: median = 0.6745 * sqrt(6) * sigma.
MAD_TO_SIGMA = 1.0 / (0.6745 * np.sqrt(6.0))

#: Layout of the per-plane vector: sum L, sum L^2, n L, sum I, n I (L = 4-neighbour Laplacian).
PLANE_FIELDS = 5


@dataclass(frozen=True)
class KeySpace:
    """How intensities of one dtype map to histogram keys (see the module docstring)."""

    dtype: np.dtype
    n_keys: int
    shift: int  # integer dtypes: right shift of (value - offset); floats: 16
    offset: int
    noise_shift: int  # noise intensity bins are key >> noise_shift (at most 256 bins)

    @property
    def is_float(self) -> bool:
        return self.dtype.kind == "f"

    @property
    def n_noise(self) -> int:
        return self.n_keys >> self.noise_shift

    @property
    def saturation_value(self) -> float | None:
        """The value a saturated pixel has (the dtype maximum); None for floats."""
        return None if self.is_float else float(np.iinfo(self.dtype).max)

    @property
    def vector_length(self) -> int:
        """Length of the per-block channel vector: histogram, noise histogram, 3 scalars."""
        return self.n_keys + self.n_noise * D_BINS + 3


@lru_cache(maxsize=32)
def key_space(dtype: np.dtype | str | type) -> KeySpace:
    dt = np.dtype(dtype)
    if dt.kind == "b":
        dt = np.dtype("uint8")
    if dt.kind in "ui":
        info = np.iinfo(dt)
        bits = dt.itemsize * 8
        shift = max(0, bits - 16)
        n_keys = 1 << min(bits, 16)
        offset = int(info.min)
    elif dt.kind == "f":
        shift, n_keys, offset = 16, 1 << 16, 0
    else:
        raise TypeError(f"unsupported pixel type {dt} for QC statistics")
    noise_shift = max(0, int(np.log2(n_keys)) - 8)
    return KeySpace(dt, n_keys, shift, offset, noise_shift)


def _ordered_bits(values: np.ndarray) -> np.ndarray:
    """float32 -> uint32 such that the unsigned order equals the float order."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    return np.where(bits & np.uint32(0x80000000), ~bits, bits | np.uint32(0x80000000))


def intensity_keys(values: np.ndarray, space: KeySpace) -> np.ndarray:
    """Histogram keys (intp, in [0, n_keys)) of ``values`` (NaN must be removed first)."""
    if space.is_float:
        return (_ordered_bits(values) >> np.uint32(16)).astype(np.intp)
    if space.dtype.itemsize <= 2 and space.offset == 0:
        return values.astype(np.intp, copy=False)
    shifted = values.astype(np.int64) - space.offset if space.dtype.kind == "i" else values.astype(np.uint64)
    return (shifted >> space.shift).astype(np.intp)


def key_values(keys: np.ndarray, space: KeySpace, where: float = 0.5) -> np.ndarray:
    """Intensity at a position inside each key's bin (0 = lower edge, 0.5 = centre, 1 = upper edge).

    For 8/16-bit integers a key is one value, returned exactly whatever ``where`` is.
    """
    keys = np.asarray(keys, dtype=np.int64)
    if space.is_float:
        frac = np.uint32(min(int(where * 0x10000), 0xFFFF))
        ordered = (keys.astype(np.uint32) << np.uint32(16)) | frac
        bits = np.where(ordered & np.uint32(0x80000000), ordered & np.uint32(0x7FFFFFFF), ~ordered)
        return bits.astype(np.uint32).view(np.float32).astype(np.float64)
    width = 1 << space.shift
    base = keys.astype(np.float64) * width + space.offset
    return base if width == 1 else base + where * (width - 1)


def difference_bins(absdiff: np.ndarray, space: KeySpace) -> np.ndarray:
    """Log-scale bin (0..D_BINS-1) of |second differences|.

    Integers: ``floor(4 log2(1 + |d|))`` (4 bins per octave, |d| up to 2**16);
    floats: ``floor(2 log2 |d|) + 40`` (2 bins per octave, |d| from 2**-20 to 2**12).
    """
    if space.is_float:
        with np.errstate(divide="ignore"):
            b = np.floor(2.0 * np.log2(absdiff)) + 40
        b = np.where(absdiff > 0, b, 0)
    elif space.dtype.itemsize <= 2:
        lut = _int_difference_lut()
        return lut[np.minimum(absdiff.astype(np.intp), lut.size - 1)]
    else:
        b = np.floor(4.0 * np.log2(1.0 + absdiff))
    return np.clip(b, 0, D_BINS - 1).astype(np.intp)


@lru_cache(maxsize=1)
def _int_difference_lut() -> np.ndarray:
    """difference_bins of every |d| an 8/16-bit second difference can take (0 .. 4 * 65535)."""
    d = np.arange(4 * 65535 + 1, dtype=np.float64)
    return np.clip(np.floor(4.0 * np.log2(1.0 + d)), 0, D_BINS - 1).astype(np.intp)


def difference_bin_value(position: float, space: KeySpace) -> float:
    """|d| at a (fractional) bin position, inverse of :func:`difference_bins`."""
    if space.is_float:
        return float(2.0 ** ((position - 40) / 2.0))
    return float(2.0 ** (position / 4.0) - 1.0)


# --------------------------------------------------------------------------- per block


def channel_block_stats(block: np.ndarray, space: KeySpace | None = None) -> np.ndarray:
    """Statistics of one block of one channel, as a float64 vector of ``space.vector_length``.

    Layout: ``[histogram (n_keys) | noise histogram (n_noise x D_BINS) | n_valid, n_nan,
    n_saturated]``.

    The noise part is the photon-transfer idea: for every run of three horizontally adjacent
    pixels ``(a, b, c)``, the second difference ``a - 2b + c`` removes the local intensity
    level and slope and has a spread of sqrt(6) times the noise at the level of ``b``. A 2-D
    histogram of (intensity bin of ``b``, log-bin of ``|a - 2b + c|``) is kept, so that the
    *median* absolute difference, robust to edges and fine detail, can be read for any
    intensity range once all blocks are summed. Runs touching a saturated pixel or NaN are
    left out.
    """
    space = space or key_space(block.dtype)
    out = np.zeros(space.vector_length, dtype=np.float64)
    nk, nn = space.n_keys, space.n_noise
    data = np.asarray(block)
    nan_mask = np.isnan(data) if space.is_float else None
    valid = data[~nan_mask] if nan_mask is not None else data.reshape(-1)
    if valid.size:
        out[:nk] = np.bincount(intensity_keys(valid, space).ravel(), minlength=nk)[:nk]
    tail = nk + nn * D_BINS
    out[tail] = valid.size
    out[tail + 1] = 0 if nan_mask is None else int(nan_mask.sum())
    sat = space.saturation_value
    if sat is not None:
        out[tail + 2] = int(np.count_nonzero(data == data.dtype.type(sat)))
    if data.ndim >= 2 and data.shape[-1] >= 3:
        rows = data[..., ::NOISE_ROW_STEP, :]
        a, b, c = rows[..., :-2], rows[..., 1:-1], rows[..., 2:]
        ok = np.ones(b.shape, dtype=bool)
        if sat is not None:
            top = data.dtype.type(sat)
            ok &= (a != top) & (b != top) & (c != top)
        else:
            ok &= np.isfinite(a) & np.isfinite(b) & np.isfinite(c)
        if ok.any():
            d = np.abs(a.astype(np.float32) - 2.0 * b.astype(np.float32) + c.astype(np.float32))[ok]
            cell = (intensity_keys(b[ok], space) >> space.noise_shift) * D_BINS + difference_bins(d, space)
            out[nk:tail] = np.bincount(cell, minlength=nn * D_BINS)[:nn * D_BINS]
    return out


def plane_block_stats(block: np.ndarray) -> np.ndarray:
    """Per-plane focus sums of a block shaped (..., Y, X): array (..., PLANE_FIELDS).

    Fields: sum of the 4-neighbour Laplacian L over the block interior, sum of L**2, number of
    interior pixels, sum of intensities, number of (finite) pixels. Sums combine across tiles;
    the Laplacian is taken inside each tile only (the one-pixel tile borders are left out).
    """
    data = np.asarray(block, dtype=np.float32)
    lead = data.shape[:-2]
    out = np.zeros((*lead, PLANE_FIELDS), dtype=np.float64)
    finite = np.isfinite(data)
    safe = np.where(finite, data, 0.0) if not finite.all() else data
    out[..., 3] = safe.sum(axis=(-2, -1), dtype=np.float64)
    out[..., 4] = finite.sum(axis=(-2, -1))
    if data.shape[-2] >= 3 and data.shape[-1] >= 3:
        c = safe[..., 1:-1, 1:-1]
        lap = (safe[..., :-2, 1:-1] + safe[..., 2:, 1:-1] + safe[..., 1:-1, :-2] + safe[..., 1:-1, 2:]) - 4.0 * c
        out[..., 0] = lap.sum(axis=(-2, -1), dtype=np.float64)
        out[..., 1] = np.square(lap, dtype=np.float64).sum(axis=(-2, -1))
        out[..., 2] = lap.shape[-2] * lap.shape[-1]
    return out


# --------------------------------------------------------------------------- combined


@dataclass
class ChannelStats:
    """Combined statistics of one channel (sum of :func:`channel_block_stats` vectors)."""

    space: KeySpace
    histogram: np.ndarray  # counts per key
    noise: np.ndarray  # (n_noise, D_BINS) counts of |second difference| per intensity bin
    n_valid: int
    n_nan: int
    n_saturated: int
    minimum: float | None = None
    maximum: float | None = None

    @classmethod
    def from_vector(cls, vec: np.ndarray, space: KeySpace, minimum: float | None = None,
                    maximum: float | None = None) -> "ChannelStats":
        nk, nn = space.n_keys, space.n_noise
        tail = nk + nn * D_BINS
        return cls(space, vec[:nk].astype(np.int64), vec[nk:tail].reshape(nn, D_BINS).astype(np.int64),
                   int(vec[tail]), int(vec[tail + 1]), int(vec[tail + 2]),
                   None if minimum is None or not np.isfinite(minimum) else float(minimum),
                   None if maximum is None or not np.isfinite(maximum) else float(maximum))

    def percentile(self, q: float) -> float | None:
        """The ``q``-th percentile (0..100) from the key histogram (exact for 8/16-bit)."""
        return percentile_from_histogram(self.histogram, self.space, q)

    def noise_sigma(self, lo: float | None, hi: float | None) -> float | None:
        """Noise standard deviation pooled over intensities in [lo, hi] (None = open end)."""
        nn = self.space.n_noise
        idx = np.arange(nn)
        sel = np.ones(nn, dtype=bool)
        if lo is not None:
            sel &= idx >= (_key_of(lo, self.space) >> self.space.noise_shift)
        if hi is not None:
            sel &= idx <= (_key_of(hi, self.space) >> self.space.noise_shift)
        counts = self.noise[sel].sum(axis=0)
        n = int(counts.sum())
        if n < 16:
            return None
        cum = np.cumsum(counts)
        half = n / 2.0
        b = int(np.searchsorted(cum, half))
        before = cum[b - 1] if b > 0 else 0
        position = b + (half - before) / max(counts[b], 1)  # linear inside the log bin
        return difference_bin_value(position, self.space) * MAD_TO_SIGMA


def _key_of(value: float, space: KeySpace) -> int:
    if space.is_float:
        return int(intensity_keys(np.array([value], dtype=np.float32), space)[0])
    v = int(np.clip(np.floor(value), np.iinfo(space.dtype).min, np.iinfo(space.dtype).max))
    return int(intensity_keys(np.array([v], dtype=space.dtype), space)[0])


def percentile_from_histogram(hist: np.ndarray, space: KeySpace, q: float) -> float | None:
    total = int(hist.sum())
    if total == 0:
        return None
    rank = q / 100.0 * (total - 1)
    cum = np.cumsum(hist)
    key = int(np.searchsorted(cum, rank, side="right"))
    return float(key_values(np.array([min(key, len(hist) - 1)]), space)[0])


def rebin_histogram(stats: ChannelStats, bins: int) -> tuple[list[float], list[int]]:
    """Histogram with ``bins`` equal bins over [min, max] observed: (edges, counts).

    Each key's count goes to the bin holding the key's value (exact for 8/16-bit integers).
    """
    keys = np.nonzero(stats.histogram)[0]
    if keys.size == 0:
        return [], []
    values = key_values(keys, stats.space)
    lo = stats.minimum if stats.minimum is not None else float(values.min())
    hi = stats.maximum if stats.maximum is not None else float(values.max())
    if not stats.space.is_float:
        hi_edge = hi + 1.0  # integer bins cover [v, v + 1)
    else:
        hi_edge = hi if hi > lo else lo + 1.0
    edges = np.linspace(lo, hi_edge, bins + 1)
    idx = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, bins - 1)
    counts = np.bincount(idx, weights=stats.histogram[keys], minlength=bins).astype(np.int64)
    return [float(e) for e in edges], [int(c) for c in counts]


@dataclass(frozen=True)
class SnrEstimate:
    """The pieces of the SNR estimate (see :func:`estimate_snr`)."""

    snr: float | None
    background: float | None
    signal: float | None
    noise_background: float | None
    noise_signal: float | None


def estimate_snr(stats: ChannelStats) -> SnrEstimate:
    """Signal-to-noise ratio following the SVI (Huygens) definition, estimated from the image.

    SVI defines the SNR of a microscope image as the square root of the number of photons in
    the brightest part of the image: with Poisson (photon) noise, a level of N photons has a
    standard deviation of sqrt(N), so SNR = N / sqrt(N) = sqrt(N). The camera gain g
    (grey levels per photon) and offset are unknown here, but they cancel: a level
    N photons above background reads ``mu_S - mu_B = g N`` with noise ``sigma_S = g sqrt(N)``,
    hence::

        SNR = (mu_S - mu_B) / sigma_S          (= sqrt(N) when photon noise dominates)

    With read noise or other noise on top, this is the *effective* SNR (lower than sqrt(N)),
    which is what matters for deconvolution and for QC. Estimators used:

    * ``sigma(I)``: noise at intensity I from the median absolute second difference of
      adjacent pixels (photon transfer curve, :func:`channel_block_stats`), robust to edges;
      ``sigma_S`` pools intensities at or above the 99th percentile, ``sigma_B`` those at or
      below the 20th; saturated pixels are left out.
    * ``mu_B = P10 + 1.28 sigma_B``: the 10th percentile, corrected for noise (for a
      Gaussian level, P10 lies 1.28 sigma below its mean);
    * ``mu_S = P99.9 - 3.09 sigma_S``: the brightest part, taken at the 99.9th percentile
      (robust to a few hot pixels) and corrected for noise the same way, so that an image of
      pure noise scores about 0 rather than about 4.

    The result is clamped at 0. None when there are too few pixels to say.
    """
    p_b = stats.percentile(BACKGROUND_PERCENTILE)
    p_s = stats.percentile(SIGNAL_PERCENTILE)
    if p_b is None or p_s is None:
        return SnrEstimate(None, p_b, p_s, None, None)
    s_b = stats.noise_sigma(None, stats.percentile(BACKGROUND_POOL_PERCENTILE))
    s_s = stats.noise_sigma(stats.percentile(SIGNAL_POOL_PERCENTILE), None)
    if s_s is None or s_b is None:
        return SnrEstimate(None, p_b, p_s, s_b, s_s)
    mu_b = p_b + Z_BACKGROUND * s_b
    mu_s = p_s - Z_SIGNAL * s_s
    if s_s <= 0:
        snr = float("inf") if mu_s > mu_b else 0.0
    else:
        snr = max(0.0, (mu_s - mu_b) / s_s)
    return SnrEstimate(snr, mu_b, mu_s, s_b, s_s)


def dynamic_range_fraction(stats: ChannelStats, available: tuple[float, float] | None = None) -> float | None:
    """Fraction of the available range that the image uses, between the 0.1 and 99.9 percentiles.

    ``available``: the (low, high) values the acquisition could take, from its bit depth
    (:func:`microfair.qc.bitdepth.intensity_range`). Without it, integers are measured against
    the dtype range (a 12-bit camera filling its range in uint16 would use 6 %), floats against
    the observed [min, max] range (floats have no natural range).
    """
    lo, hi = stats.percentile(LOW_PERCENTILE), stats.percentile(HIGH_PERCENTILE)
    if lo is None or hi is None:
        return None
    if available is not None:
        low, high = available
        return 0.0 if high <= low else float((hi - lo) / (high - low))
    if stats.space.is_float:
        if stats.minimum is None or stats.maximum is None or stats.maximum <= stats.minimum:
            return 0.0
        return float((hi - lo) / (stats.maximum - stats.minimum))
    info = np.iinfo(stats.space.dtype)
    return float((hi - lo) / (float(info.max) - float(info.min)))


def focus_scores(plane_sums: np.ndarray) -> np.ndarray:
    """Normalised variance of the Laplacian per plane, from summed :func:`plane_block_stats`.

    ``F = Var(L) / mean(I)**2`` with L the 4-neighbour Laplacian: sharp detail gives large
    second derivatives, blur removes them; dividing by the squared mean intensity makes the
    score independent of exposure and gain (a dimensionless number, comparable across the
    planes of a stack and, roughly, across images of the same kind). NaN where undefined.
    """
    s = np.asarray(plane_sums, dtype=np.float64)
    n_l, n_i = s[..., 2], s[..., 4]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_l = s[..., 0] / n_l
        var_l = s[..., 1] / n_l - mean_l**2
        mean_i = s[..., 3] / n_i
        score = np.where((n_l > 0) & (mean_i > 0), np.maximum(var_l, 0.0) / mean_i**2, np.nan)
    return score


def stretch_to_uint8(image: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Contrast-stretch to 0..255 between the 0.1 and 99.9 percentiles (or given bounds)."""
    data = np.asarray(image, dtype=np.float64)
    finite = np.isfinite(data)
    if not finite.any():
        return np.zeros(data.shape, dtype=np.uint8)
    if lo is None or hi is None:
        lo_p, hi_p = np.percentile(data[finite], [LOW_PERCENTILE, HIGH_PERCENTILE])
        lo = lo_p if lo is None else lo
        hi = hi_p if hi is None else hi
    if hi <= lo:
        hi = lo + 1.0
    out = (np.where(finite, data, lo) - lo) / (hi - lo)
    return (np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
