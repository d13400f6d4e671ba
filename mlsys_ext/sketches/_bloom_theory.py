"""Bloom filter sizing and false-positive rates: the textbook formula and the exact one.

The textbook rate (1 - e^{-kn/m})^k treats the fraction of set bits as if it were
its mean. The true rate is the mean of (X/m)^k over the random number X of set
bits, which is larger (the function is convex in X): noticeably so for small m.
"""
from __future__ import annotations

import math

import numpy as np

from ._bloom_kernels import fill_power_means

BLOCK_BITS = 512  # a blocked filter's block: one 64-byte cache line
# The exact distribution of X costs (bins x balls thrown) steps; beyond this many,
# a normal distribution with X's exact mean and variance stands in for it.
EXACT_DP_BUDGET = 5e7
# Probabilists' Gauss-Hermite rule: exact for polynomials of degree < 128 in the
# normal variable, and (x/m)^k is one of degree k.
_GH_NODES, _GH_WEIGHTS = np.polynomial.hermite_e.hermegauss(64)
_GH_WEIGHTS = _GH_WEIGHTS / math.sqrt(2 * math.pi)
# Keys per block beyond mean +- this many standard deviations (+ a margin for
# small means) carry less than 1e-20 of the probability.
_TAIL_SDS = 10
# After this many bits thrown at a 512-bit block, P(some bit still clear) <=
# 512 e^{-48} < 1e-18: the block is full to double precision.
_FULL_BLOCK_THROWS = BLOCK_BITS * 48


def optimal_size(capacity: int, fpr: float, block_bits: int) -> tuple[int, int]:
    """(num_bits, num_hashes) for ``capacity`` keys at false-positive rate ``fpr``.

    m = -n ln p / (ln 2)^2 rounded up to whole units of ``block_bits`` (a 64-bit
    word, or a 512-bit block); k = (m/n) ln 2 rounded to the neighbouring integer
    with the lower textbook rate (the smaller on a tie: fewer memory accesses).
    """
    ideal_bits = -capacity * math.log(fpr) / math.log(2) ** 2
    num_bits = max(1, math.ceil(ideal_bits / block_bits)) * block_bits
    ideal_hashes = num_bits / capacity * math.log(2)
    candidates = sorted({max(1, math.floor(ideal_hashes)), max(1, math.ceil(ideal_hashes))})
    num_hashes = min(candidates, key=lambda k: fpr_classic(num_bits, k, np.asarray(capacity)))
    return num_bits, num_hashes


def fpr_classic(num_bits: int, num_hashes: int, n: np.ndarray) -> np.ndarray:
    """The textbook rate (1 - e^{-kn/m})^k."""
    return (-np.expm1(-num_hashes * n / num_bits)) ** num_hashes


def fpr_exact_classic(num_bits: int, num_hashes: int, n: np.ndarray,
                      budget: float = EXACT_DP_BUDGET) -> np.ndarray:
    """E[(X/m)^k], X the set bits after n keys each set k independent uniform bits (n: 1-D)."""
    exact = num_bits * n.astype(np.float64) * num_hashes <= budget
    out = np.empty(n.shape)
    if exact.any():
        table = np.empty(int(n[exact].max()) + 1)
        fill_power_means(num_bits, num_hashes, num_hashes, table)
        out[exact] = table[n[exact]]
    out[~exact] = _fill_power_mean_normal(num_bits, n[~exact].astype(np.float64) * num_hashes, num_hashes)
    return out


def fpr_exact_blocked(num_blocks: int, num_hashes: int, n: np.ndarray) -> np.ndarray:
    """E[(X_J/512)^k] (n: 1-D): a query falls in a uniform block, which received
    J ~ Binomial(n, 1/B) of the keys, each setting k independent uniform bits among
    its 512. Always exact: past ``_FULL_BLOCK_THROWS`` bits set, a block is full to
    double precision, which bounds the distribution's size."""
    full_at = math.ceil(_FULL_BLOCK_THROWS / num_hashes)  # keys that fill a block
    windows = [_keys_per_block(int(count), num_blocks, full_at) for count in n]
    table = np.empty(max(int(keys[-1]) for keys, _ in windows) + 1)
    fill_power_means(BLOCK_BITS, num_hashes, num_hashes, table)
    rates = []
    for keys, weights in windows:
        # The probability of more than ``full_at`` keys (if any) meets a full block.
        beyond = max(0.0, 1.0 - weights.sum()) if keys[-1] == full_at else 0.0
        rates.append(weights @ table[keys] + beyond)
    return np.asarray(rates)


def _keys_per_block(n: int, num_blocks: int, full_at: int) -> tuple[np.ndarray, np.ndarray]:
    """The likely values j <= full_at of a block's key count J ~ Binomial(n, 1/B), and P(J = j)."""
    if num_blocks == 1:
        return np.array([min(n, full_at)]), np.array([1.0])
    p = 1.0 / num_blocks
    mean, sd = n * p, math.sqrt(n * p * (1 - p))
    hi = min(n, full_at, math.ceil(mean + _TAIL_SDS * sd + _TAIL_SDS))
    lo = min(hi, max(0, math.floor(mean - _TAIL_SDS * sd - _TAIL_SDS)))
    keys = np.arange(lo, hi + 1)
    # log P(J = j) from log P(J = lo) and the ratios P(j + 1) / P(j) = (n - j) p / ((j + 1)(1 - p)).
    log_first = (math.lgamma(n + 1) - math.lgamma(lo + 1) - math.lgamma(n - lo + 1)
                 + lo * math.log(p) + (n - lo) * math.log1p(-p))
    log_ratios = np.log((n - keys[:-1]) / (keys[:-1] + 1)) + math.log(p) - math.log1p(-p)
    return keys, np.exp(log_first + np.concatenate(([0.0], np.cumsum(log_ratios))))


def _fill_power_mean_normal(bins: int, throws: np.ndarray, power: int) -> np.ndarray:
    """E[(X/bins)^power] with X, the occupied bins after ``throws`` balls, replaced by
    a normal variable of the same (exact) mean and variance, clipped to [0, bins]."""
    empty_one = np.exp(throws * math.log1p(-1 / bins))  # P(a given bin is empty)
    # P(two given bins are empty) = empty_one^2 * e^{pair_excess}; written this way the
    # variance below has no cancellation between terms of size bins^2.
    pair_excess = throws * math.log1p(-1 / (bins - 1) ** 2)
    mean = bins * (1 - empty_one)
    variance = (bins * (empty_one - empty_one**2 * np.exp(pair_excess))
                + bins**2 * empty_one**2 * np.expm1(pair_excess))
    sd = np.sqrt(np.maximum(variance, 0.0))
    x = np.clip(mean[..., None] + sd[..., None] * _GH_NODES, 0.0, bins)
    return ((x / bins) ** power) @ _GH_WEIGHTS
