"""numba kernels behind ``CountMinSketch``: add a batch of keys, estimate a batch.

Private (rule 6): callers pass the keys' ``hash64`` fingerprints (``hash_keys``),
the sketch's int64 counters (depth x width, C-contiguous), its row keys and
preallocated outputs; nothing is checked here. Counts come as an int64 array read
at ``counts[j * count_step]``: step 1 for one count per key, step 0 for one count
shared by the whole batch (no broadcast array is built).

Row hashes. Row r sends a key to column ``mulhi64(hash_word(fingerprint, row_keys[r]),
width)``: ``hash_word`` is ``hash64``'s integer hash, so each row is its own keyed
hash of the key's fingerprint, and the row keys are distinct outputs of a splitmix64
generator seeded from the sketch's seed. Rows are therefore independent apart from
full 64-bit fingerprint collisions (probability below n^2 / 2^65 for n distinct
keys). Double hashing (column = h1 + r*h2) is cheaper but is not independent: two
keys that meet in two rows meet in every row, so they meet everywhere with
probability 1/w^2 instead of 1/w^d, and a light key sharing both with a heavy one is
overestimated by the heavy key's whole count; measured for issue [B], one key came
out at 5x the eps*N bound.

Parallel adds must not lose counts: ``row[c] += count`` is a read-modify-write, and
two threads updating one counter at once can each write back a value missing the
other's count. Rows are independent, so each thread owns whole rows: it reads every
fingerprint but hashes and updates only its own rows, with plain adds, and no two
threads ever write one counter. Nothing is computed twice (the row hashes are
separate), whereas atomic adds would make hot counters (a Zipf stream's top keys)
bounce between cores. Measured on the shared 2-core machine, 1M Zipf(1.1) keys,
eps=0.001, d=5 (a 106 KB table): serial 63 M keys/s, row ownership 95 (rows split
3/2), atomic adds over split keys 69; at eps=1e-5 (10 MB) 26, 56 and 35. Each thread
runs its rows one at a time, so a row stays in cache while the keys stream past.
The result does not depend on the split: it is the same sum whichever thread adds.

Conservative update stays serial. A key's new value in every row depends on the
minimum across its rows, so rows cannot be owned; splitting keys instead needs each
key owned by one thread (or two threads adding one key could both raise its
counters from the same minimum and lose a count) and an atomic max on shared
counters. Measured as above: 21 M keys/s against 27 serial at eps=0.001, 12 against
8.5 at eps=1e-5; not worth an order-dependent result. Serial, the sketch is the same
whether a stream arrives in one batch or many.
"""
import numpy as np
from numba import njit, prange

from ._hash_kernels import GOLDEN, fmix64, hash_word, seed_key, thread_share
from ._intrinsics import mulhi64

# The next 64 bits of pi's fraction after _hash_kernels' domain keys: the seed key of
# the row-key generator, so it never equals the seed key of a key domain.
_ROW_DOMAIN = np.uint64(0x082EFA98EC4E6C89)
_INT64_MAX = np.iinfo(np.int64).max


@njit(cache=True)
def make_row_keys(seed, out):
    """``out[r]``: row r's hash key, the r-th output of a splitmix64 generator seeded
    from ``seed`` (distinct for distinct r: ``fmix64`` is a bijection)."""
    state = seed_key(seed, _ROW_DOMAIN)
    for r in range(out.shape[0]):
        state += GOLDEN
        out[r] = fmix64(state)


@njit(inline="always")
def _column(fingerprint, row_key, width):
    return mulhi64(hash_word(fingerprint, row_key), width)


@njit(inline="always")
def _add_rows(fingerprints, counts, count_step, counters, row_keys, first_row, end_row):
    width = np.uint64(counters.shape[1])
    for r in range(first_row, end_row):
        row = counters[r]
        key = row_keys[r]
        for j in range(fingerprints.shape[0]):
            row[_column(fingerprints[j], key, width)] += counts[j * count_step]


@njit(cache=True, fastmath=True)
def add(fingerprints, counts, count_step, counters, row_keys):
    _add_rows(fingerprints, counts, count_step, counters, row_keys, 0, counters.shape[0])


@njit(cache=True, fastmath=True, parallel=True)
def add_parallel(fingerprints, counts, count_step, counters, row_keys, n_threads):
    for t in prange(n_threads):
        first_row, end_row = thread_share(counters.shape[0], t, n_threads)
        _add_rows(fingerprints, counts, count_step, counters, row_keys, first_row, end_row)


@njit(cache=True, fastmath=True)
def add_conservative(fingerprints, counts, count_step, counters, row_keys):
    """Each key, in order, raises its counters only as far as needed: to the larger of
    their value and (its current estimate + its count)."""
    depth = counters.shape[0]
    width = np.uint64(counters.shape[1])
    columns = np.empty(depth, dtype=np.uint64)
    for j in range(fingerprints.shape[0]):
        estimate = _INT64_MAX
        for r in range(depth):
            columns[r] = _column(fingerprints[j], row_keys[r], width)
            estimate = min(estimate, counters[r, columns[r]])
        target = estimate + counts[j * count_step]
        for r in range(depth):
            counters[r, columns[r]] = max(counters[r, columns[r]], target)


@njit(inline="always")
def _estimate_range(fingerprints, counters, row_keys, out):
    width = np.uint64(counters.shape[1])
    out[:] = _INT64_MAX
    for r in range(counters.shape[0]):  # rows outer: one row in cache at a time
        row = counters[r]
        key = row_keys[r]
        for j in range(fingerprints.shape[0]):
            out[j] = min(out[j], row[_column(fingerprints[j], key, width)])


@njit(cache=True, fastmath=True)
def estimate(fingerprints, counters, row_keys, out):
    """``out[j]``: the smallest of key j's counters."""
    _estimate_range(fingerprints, counters, row_keys, out)


@njit(cache=True, fastmath=True, parallel=True)
def estimate_parallel(fingerprints, counters, row_keys, out, n_threads):
    for t in prange(n_threads):
        lo, hi = thread_share(fingerprints.shape[0], t, n_threads)
        _estimate_range(fingerprints[lo:hi], counters, row_keys, out[lo:hi])
