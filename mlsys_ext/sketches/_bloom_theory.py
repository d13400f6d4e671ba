"""Bloom filter sizing and false-positive rates: the textbook formula and the exact one.

The textbook rate (1 - e^{-kn/m})^k treats the fraction of set bits as if it were
its mean. The true rate is the mean of (X/m)^k over the random number X of set
bits, which is larger (the function is convex in X): noticeably so for small m.
"""
from __future__ import annotations

import math

import numpy as np

from ._bloom_kernels import binomial_mixture, fill_power_means

WORD_BITS = 64  # a classic filter has whole 64-bit words
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


def classic_size(capacity: int, fpr: float) -> tuple[int, int]:
    """(num_bits, num_hashes) of a classic filter for ``capacity`` keys at rate ``fpr``.

    m = -n ln p / (ln 2)^2 rounded up to whole 64-bit words; k = (m/n) ln 2 rounded
    to the neighbouring integer with the lower textbook rate (the smaller on a tie:
    fewer memory accesses).
    """
    ideal_bits = -capacity * math.log(fpr) / math.log(2) ** 2
    num_bits = max(1, math.ceil(ideal_bits / WORD_BITS)) * WORD_BITS
    ideal_hashes = num_bits / capacity * math.log(2)
    candidates = sorted({max(1, math.floor(ideal_hashes)), max(1, math.ceil(ideal_hashes))})
    num_hashes = min(candidates, key=lambda k: fpr_classic(num_bits, k, np.asarray(capacity)))
    return num_bits, num_hashes


def blocked_size(capacity: int, fpr: float) -> tuple[int, int]:
    """(num_bits, num_hashes) of a blocked filter whose exact rate after ``capacity``
    keys is at most ``fpr``: the fewest 512-bit blocks, no fewer than the classic
    size, that reach ``fpr`` with the chosen k.

    The textbook size falls short because blocks receive uneven numbers of keys.
    Searching on the exact per-block rates would cost a recursion per k tried, so k
    is chosen on their textbook form (1 - (1 - 1/512)^{jk})^k for j keys, which is
    cheap: walking down from the classic filter's k, the one needing the fewest
    blocks (the smaller on a tie). Never more hashes than classic: that would lower
    the rate of a filter with bits to spare (one block for a few keys) at a memory
    access each. The blocks for that k are then found on the exact rates (one short
    recursion). Each bisection step costs only the binomial weights.
    """
    classic_bits, k = classic_size(capacity, fpr)
    least = math.ceil(classic_bits / BLOCK_BITS)

    def blocks_needed(num_hashes: int, table_of) -> int:
        full_at = _full_at(num_hashes)
        # More blocks only lower a block's likely key counts: a table for ``least`` serves them all.
        table = table_of(num_hashes, _key_window(capacity, least, full_at)[1])
        return _fewest_blocks(lambda blocks: _blocked_rate(capacity, blocks, full_at, table) <= fpr, least)

    blocks = blocks_needed(k, _textbook_block_rates)
    while k > 1 and (fewer := blocks_needed(k - 1, _textbook_block_rates)) <= blocks:  # unimodal in k
        k, blocks = k - 1, fewer
    return blocks_needed(k, _block_power_means) * BLOCK_BITS, k


def _fewest_blocks(meets, least: int) -> int:
    """The fewest blocks, at least ``least``, that ``meets`` the rate (which falls as blocks are added)."""
    if meets(least):
        return least
    low, high = least, 2 * least
    while not meets(high):
        low, high = high, 2 * high
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if meets(middle) else (middle, high)
    return high


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
    full_at = _full_at(num_hashes)
    table = _block_power_means(num_hashes, max(_key_window(int(count), num_blocks, full_at)[1] for count in n))
    return np.asarray([_blocked_rate(int(count), num_blocks, full_at, table) for count in n])


def _full_at(num_hashes: int) -> int:
    """Keys that fill a block to double precision."""
    return math.ceil(_FULL_BLOCK_THROWS / num_hashes)


def _block_power_means(num_hashes: int, most_keys: int) -> np.ndarray:
    """E[(X_j/512)^k] for j = 0 .. most_keys keys in a block: the exact per-block rates."""
    table = np.empty(most_keys + 1)
    fill_power_means(BLOCK_BITS, num_hashes, num_hashes, table)
    return table


def _textbook_block_rates(num_hashes: int, most_keys: int) -> np.ndarray:
    """(1 - (1 - 1/512)^{jk})^k for j = 0 .. most_keys: the per-block rates at the mean fill."""
    throws = num_hashes * np.arange(most_keys + 1)
    return (-np.expm1(throws * math.log1p(-1 / BLOCK_BITS))) ** num_hashes


def _blocked_rate(n: int, num_blocks: int, full_at: int, table: np.ndarray) -> float:
    """The rate after ``n`` keys from per-block rates ``table`` covering ``_key_window``."""
    lo, hi = _key_window(n, num_blocks, full_at)
    if num_blocks == 1:
        return float(table[hi])
    rate, mass = binomial_mixture(n, 1.0 / num_blocks, lo, hi, table)
    # The probability of more than ``full_at`` keys (if any) meets a full block.
    return rate + (max(0.0, 1.0 - mass) if hi == full_at else 0.0)


def _key_window(n: int, num_blocks: int, full_at: int) -> tuple[int, int]:
    """The likely key counts lo <= j <= hi (hi <= full_at) of a block, J ~ Binomial(n, 1/B)."""
    if num_blocks == 1:
        return min(n, full_at), min(n, full_at)
    p = 1.0 / num_blocks
    mean, sd = n * p, math.sqrt(n * p * (1 - p))
    hi = min(n, full_at, math.ceil(mean + _TAIL_SDS * sd + _TAIL_SDS))
    return min(hi, max(0, math.floor(mean - _TAIL_SDS * sd - _TAIL_SDS))), hi


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
