"""Range observers for post-training quantization (kiln.quantize): from the values a tensor took
over the calibration batches to the largest magnitude its quantized form represents (its
"amax"; the scale is amax over the type's largest value).

- ``minmax``: the largest magnitude seen. Keeps every value representable; a few outliers
  stretch the scale for all the others.
- ``percentile``: the given percentile of the magnitudes (99.99 by default): clips the rarest
  outliers.
- ``entropy``: the clipping threshold whose quantized distribution loses the least information
  against the observed one (the smallest Kullback-Leibler divergence, the method TensorRT's
  entropy calibrator describes), searched over a histogram of magnitudes.

Each observer sees the batches twice: once for the largest magnitude (which fixes the
histogram's range), once for the histogram.
"""

from __future__ import annotations

import numpy as np

METHODS = ("minmax", "percentile", "entropy")
HISTOGRAM_BINS = 2048


class RangeObserver:
    """Collects one tensor's magnitudes: ``see_range`` over every batch first, then ``see``."""

    def __init__(self) -> None:
        self.amax = 0.0
        self.histogram: np.ndarray | None = None
        self.nonfinite = 0

    def see_range(self, values: np.ndarray) -> None:
        magnitudes = np.abs(np.asarray(values, dtype=np.float64))
        finite = np.isfinite(magnitudes)
        self.nonfinite += int(magnitudes.size - finite.sum())
        if finite.any():
            self.amax = max(self.amax, float(magnitudes[finite].max()))

    def see(self, values: np.ndarray) -> None:
        if self.amax <= 0.0:
            return
        magnitudes = np.abs(np.asarray(values, dtype=np.float64)).ravel()
        magnitudes = magnitudes[np.isfinite(magnitudes)]
        counts, _ = np.histogram(magnitudes, bins=HISTOGRAM_BINS, range=(0.0, self.amax))
        self.histogram = counts if self.histogram is None else self.histogram + counts

    def threshold(self, method: str, percentile: float, levels: int) -> float:
        """The amax to quantize with; ``levels``: the positive quantization levels (127 for int8)."""
        if self.amax <= 0.0 or method == "minmax" or self.histogram is None:
            return self.amax
        if method == "percentile":
            return percentile_threshold(self.histogram, self.amax, percentile)
        return entropy_threshold(self.histogram, self.amax, levels)


def percentile_threshold(histogram: np.ndarray, amax: float, percentile: float) -> float:
    total = histogram.sum()
    if total == 0:
        return amax
    cumulative = np.cumsum(histogram) / total
    index = int(np.searchsorted(cumulative, percentile / 100.0))
    width = amax / len(histogram)
    return min(amax, (index + 1) * width)


def _kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def entropy_threshold(histogram: np.ndarray, amax: float, levels: int) -> float:
    """The threshold (a bin edge) minimising KL(P || Q): P the histogram up to the threshold with
    the mass beyond it folded into its last bin, Q the histogram up to the threshold without that
    mass, merged into ``levels`` levels and spread back evenly over the bins that were non-zero."""
    bins = len(histogram)
    hist = histogram.astype(np.float64)
    if hist.sum() == 0 or bins <= levels:
        return amax
    width = amax / bins
    best_index, best_divergence = bins, np.inf
    tail = np.concatenate([np.cumsum(hist[::-1])[::-1], [0.0]])  # tail[i]: mass in bins >= i
    for stop in range(levels, bins + 1):
        p = hist[:stop].copy()
        p[-1] += tail[stop]
        if p.sum() == 0:
            continue
        # Q: the first `stop` bins merged into `levels` groups, each group's mass spread over its
        # non-zero bins.
        group = np.minimum(np.floor(np.arange(stop) * levels / stop).astype(np.int64), levels - 1)
        nonzero = hist[:stop] > 0
        # (Q leaves the clipped mass out: that is what clipping costs.)
        group_mass = np.bincount(group, weights=hist[:stop], minlength=levels)
        group_support = np.bincount(group, weights=nonzero.astype(np.float64), minlength=levels)
        q = np.zeros(stop)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(group_support > 0, group_mass / group_support, 0.0)
        q[nonzero] = share[group[nonzero]]
        p_sum, q_sum = p.sum(), q.sum()
        if q_sum == 0:
            continue
        p_normalised = p / p_sum
        q_normalised = q / q_sum
        q_normalised[(p_normalised > 0) & (q_normalised == 0)] = 1e-12
        divergence = _kl_divergence(p_normalised, q_normalised)
        if divergence < best_divergence:
            best_index, best_divergence = stop, divergence
    return min(amax, best_index * width)
