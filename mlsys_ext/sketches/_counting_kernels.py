"""numba kernels behind ``CountingBloomFilter``: one saturating uint8 counter per position.

A key's positions are those of a classic ``BloomFilter`` (``_bloom_kernels``), so
the two share their false-positive theory. Serial: counting filters serve the
small, changing sets where removal matters, and a decrement race would corrupt
counts silently. A counter that reached 255 stays there (it no longer knows its
count), which can only turn a later false negative into a false positive.

numba's cache checks only the source file of each cached function: these kernels
inline ``classic_position`` from ``_bloom_kernels``; after editing it, delete
``mlsys_ext/sketches/__pycache__``.
"""
from numba import njit

from ._bloom_kernels import classic_position

SATURATED = 255


@njit(cache=True, fastmath=True)
def counting_add(hashes, counters, num_bits, num_hashes):
    for j in range(hashes.shape[0]):
        state = hashes[j]
        for _ in range(num_hashes):
            state, i = classic_position(state, num_bits)
            if counters[i] < SATURATED:
                counters[i] += 1


@njit(cache=True, fastmath=True)
def counting_contains(hashes, counters, num_bits, num_hashes, out):
    for j in range(hashes.shape[0]):
        state = hashes[j]
        found = True
        for _ in range(num_hashes):
            state, i = classic_position(state, num_bits)
            found &= counters[i] != 0
        out[j] = found


@njit(cache=True, fastmath=True)
def counting_remove(hashes, counters, num_bits, num_hashes):
    """Decrement the keys' counters; the caller has checked that every key is present."""
    for j in range(hashes.shape[0]):
        state = hashes[j]
        for _ in range(num_hashes):
            state, i = classic_position(state, num_bits)
            if 0 < counters[i] < SATURATED:
                counters[i] -= 1
