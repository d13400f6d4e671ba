"""numba kernels behind the placement schemes of ``_sharding``.

Private (rule 6): callers pass preallocated, C-contiguous arrays of the dtypes named
and valid arguments (at least one shard, indices in range); nothing is checked here,
and nothing is allocated but jump hash's eight-slot scratch.
Key hashes arrive already computed by ``hash64``; where a kernel tracks shards by
their index in the scheme's sorted shard array, the caller maps indices back to ids.

The per-key lookups (ring, jump, rendezvous) have a serial form and a ``_parallel``
one that splits the keys over ``n_threads`` threads, passed in (never read from numba
inside a cached kernel); ``mlsys_ext._threads`` picks one per batch, as for the sketches.

Rendezvous scores reuse the sketches' keyed word hash (``hash_word``), so there is one
hash family in the package. numba's cache checks only this file: after an edit of
``mlsys_ext/sketches/_hash_kernels.py`` delete ``mlsys_ext/distributed/__pycache__``.
"""
import numpy as np
from numba import njit, prange

from ..sketches._hash_kernels import hash_word

# Lamping & Veach's 64-bit linear congruential step (the paper's Figure 1).
_JUMP_MULTIPLIER = np.uint64(2862933555777941757)
_TWO_TO_31 = float(1 << 31)
_JUMP_LANES = 8


@njit(inline="always")
def _thread_share(n, t, n_threads):
    """Thread t's share [lo, hi) of n items."""
    return t * n // n_threads, (t + 1) * n // n_threads


@njit(inline="always")
def _successor(h, points, index, shift):
    """The first ring point at or after ``h``: ``index[h >> shift]`` is the first point of
    h's bucket of the key space, and a forward scan (under one point on average, as
    there are more buckets than points) finds the rest. ``points`` ends with a
    sentinel 2**64 - 1, past which no hash lies, so the scan needs no bounds check."""
    j = index[h >> shift]
    while points[j] < h:
        j += 1
    return j


@njit(inline="always")
def _ring_range(hashes, points, index, shift, owners, out):
    for i in range(hashes.shape[0]):
        out[i] = owners[_successor(hashes[i], points, index, shift)]


@njit(cache=True)
def ring_owners(hashes, points, index, shift, owners, out):
    """Consistent hash ring lookup: ``out[i]`` is the owner of the first point at or after
    ``hashes[i]``. ``points`` (uint64, sorted, then the sentinel), ``index`` (int32,
    2**(64 - shift) bucket starts) and ``owners`` (int64, one per point, then the first
    point's owner again for the sentinel: the ring wraps)."""
    _ring_range(hashes, points, index, shift, owners, out)


@njit(cache=True, parallel=True)
def ring_owners_parallel(hashes, points, index, shift, owners, out, n_threads):
    for t in prange(n_threads):
        lo, hi = _thread_share(hashes.shape[0], t, n_threads)
        _ring_range(hashes[lo:hi], points, index, shift, owners, out[lo:hi])


@njit(cache=True)
def ring_successors(hashes, points, index, shift, out):
    """``out[i]``: the index in [0, n_points] of the first point at or after ``hashes[i]``
    (n_points, the sentinel, stands for the first point again)."""
    for i in range(hashes.shape[0]):
        out[i] = _successor(hashes[i], points, index, shift)


@njit(inline="always")
def _jump_range(hashes, buckets, out):
    # Each key's steps are a chain of dependent divisions; stepping _JUMP_LANES keys in
    # lock-step overlaps their latencies (about 1.8x faster than one key at a time).
    n_buckets = buckets.shape[0]
    keys = np.empty(_JUMP_LANES, dtype=np.uint64)
    bucket = np.empty(_JUMP_LANES, dtype=np.int64)
    candidate = np.empty(_JUMP_LANES, dtype=np.int64)
    for start in range(0, hashes.shape[0], _JUMP_LANES):
        width = min(_JUMP_LANES, hashes.shape[0] - start)
        for lane in range(_JUMP_LANES):
            keys[lane] = hashes[start + lane] if lane < width else np.uint64(0)
            bucket[lane] = -1
            candidate[lane] = 0 if lane < width else n_buckets  # a lane past the end starts done
        stepping = True
        while stepping:
            stepping = False
            for lane in range(_JUMP_LANES):
                if candidate[lane] < n_buckets:
                    bucket[lane] = candidate[lane]
                    keys[lane] = keys[lane] * _JUMP_MULTIPLIER + np.uint64(1)
                    candidate[lane] = np.int64((bucket[lane] + 1)
                                               * (_TWO_TO_31 / (np.float64(keys[lane] >> np.uint64(33)) + 1.0)))
                    stepping = True
        for lane in range(width):
            out[start + lane] = buckets[bucket[lane]]


@njit(cache=True)
def jump_shards(hashes, buckets, out):
    """Jump consistent hash: key i goes to bucket b in [0, len(buckets)) for the uint64
    ``hashes[i]``, and ``out[i]`` is that bucket's shard id, ``buckets[b]``."""
    _jump_range(hashes, buckets, out)


@njit(cache=True, parallel=True)
def jump_shards_parallel(hashes, buckets, out, n_threads):
    for t in prange(n_threads):
        lo, hi = _thread_share(hashes.shape[0], t, n_threads)
        _jump_range(hashes[lo:hi], buckets, out[lo:hi])


@njit(inline="always")
def _rendezvous_range(hashes, shard_keys, shard_ids, out):
    n_shards = shard_keys.shape[0]
    for i in range(hashes.shape[0]):
        h = hashes[i]
        best = 0
        best_score = hash_word(h, shard_keys[0])
        for s in range(1, n_shards):
            score = hash_word(h, shard_keys[s])
            if score > best_score:
                best = s
                best_score = score
        out[i] = shard_ids[best]


@njit(cache=True)
def rendezvous_winners(hashes, shard_keys, shard_ids, out):
    """Highest random weight: ``out[i]`` is ``shard_ids[s]`` for the s whose score
    ``hash_word(hashes[i], shard_keys[s])`` is largest (the lowest s on a tie)."""
    _rendezvous_range(hashes, shard_keys, shard_ids, out)


@njit(cache=True, parallel=True)
def rendezvous_winners_parallel(hashes, shard_keys, shard_ids, out, n_threads):
    for t in prange(n_threads):
        lo, hi = _thread_share(hashes.shape[0], t, n_threads)
        _rendezvous_range(hashes[lo:hi], shard_keys, shard_ids, out[lo:hi])


@njit(cache=True)
def maglev_populate(offsets, skips, next_choice, table):
    """Maglev's lookup-table population (Eisenbud et al. 2016, Pseudocode 1).

    Backend i's preference list is ``(offsets[i] + j * skips[i]) mod M`` for j = 0, 1, ...,
    a permutation of the M slots because M is prime and 0 < skip < M. Backends take
    turns claiming their next unclaimed preferred slot until all M are claimed.
    ``next_choice`` (int64, one per backend) must be zero; ``table`` (int64, M) is filled
    with backend indices.
    """
    m = table.shape[0]
    table[:] = -1
    filled = 0
    while True:
        for i in range(offsets.shape[0]):
            slot = (offsets[i] + next_choice[i] * skips[i]) % m
            while table[slot] >= 0:
                next_choice[i] += 1
                slot = (offsets[i] + next_choice[i] * skips[i]) % m
            table[slot] = i
            next_choice[i] += 1
            filled += 1
            if filled == m:
                return


@njit(cache=True)
def bounded_load_walk(starts, point_owners, capacity, loads, out):
    """Consistent hashing with bounded loads (Mirrokni, Thorup & Zadimoghaddam 2018).

    Keys are placed one after another, in array order: key i starts at ring point
    ``starts[i]`` (in [0, n_points]; n_points is the first point again) and walks
    clockwise past points whose shard already holds ``capacity`` keys.
    ``point_owners`` holds the shard index of each ring point in ring order, ``loads``
    (int64, one per shard) the running counts, zero on entry; the caller guarantees
    ``capacity * n_shards >= len(starts)``.
    """
    n_points = point_owners.shape[0]
    for i in range(starts.shape[0]):
        point = starts[i]
        if point == n_points:  # past the last point: the ring wraps to the first
            point = 0
        while loads[point_owners[point]] >= capacity:
            point += 1
            if point == n_points:
                point = 0
        owner = point_owners[point]
        loads[owner] += 1
        out[i] = owner


@njit(cache=True)
def least_loaded_choice(candidates, loads, out):
    """The power of d choices, in stream order: row i of ``candidates`` (int64, keys x d)
    holds key i's candidate shard indices; the key goes to the least loaded so far
    (the first on a tie), whose count in ``loads`` (int64, zero on entry) then grows."""
    for i in range(candidates.shape[0]):
        best = candidates[i, 0]
        for c in range(1, candidates.shape[1]):
            shard = candidates[i, c]
            if loads[shard] < loads[best]:
                best = shard
        loads[best] += 1
        out[i] = best
