"""numba kernels behind ``MinHashLSH`` and ``SimHashLSH``.

Private (rule 6): callers pass C-contiguous arrays of the right dtypes, valid sizes
and preallocated outputs; nothing is checked here. Each batch operation has a
serial form and a ``_parallel`` one taking ``n_threads`` (see ``_threads.run``).

- ``band_hashes``: one 64-bit key per band of each MinHash signature (r slots
  chained through splitmix64's finaliser, a bijection per step), so a bucket is a
  dict entry keyed by an int; distinct bands collide with probability ~2**-64.
- ``band_codes``: SimHash codes, the signs of the projections on the hyperplanes,
  packed ``band_bits`` to a band.
- ``simhash_query``: for each query, the rows sharing a bucket with it in any band
  (and, with multi-probe, in the buckets nearest to it), then their exact cosine
  distances and the k nearest. A band's buckets are runs of its codes sorted once
  (two binary searches find one), so building the index is one argsort per band and
  indexes merge by concatenation.

numba's cache checks only the source file of each cached function: these kernels
inline ``fmix64`` from ``_hash_kernels``; after editing it, delete
``mlsys_ext/sketches/__pycache__``.
"""
import numpy as np
from numba import njit, prange

from ._hash_kernels import GOLDEN, fmix64, thread_share

_ONE = np.uint64(1)
# fastmath without "nnan"/"ninf": the query kernel writes inf for missing neighbours.
_FAST_FINITE = {"nsz", "arcp", "contract", "reassoc", "afn"}


# -- MinHash bands -------------------------------------------------------------------

@njit(inline="always")
def _band_hashes_range(signatures, rows, key, out):
    num_bands = out.shape[1]
    state = np.empty(num_bands, dtype=np.uint64)
    for j in range(signatures.shape[0]):
        for band in range(num_bands):
            state[band] = key + np.uint64(band + 1) * GOLDEN
        # Slot by slot across the bands: the bands' chains are independent, so the
        # core overlaps them (one chain at a time waits on each multiply).
        for i in range(rows):
            for band in range(num_bands):
                state[band] = fmix64(state[band] ^ signatures[j, band * rows + i])
        for band in range(num_bands):
            out[j, band] = state[band]


@njit(cache=True, fastmath=True)
def band_hashes(signatures, rows, key, out):
    """``out[j, band]``: the hash of ``signatures[j, band*rows:(band+1)*rows]``."""
    _band_hashes_range(signatures, rows, key, out)


@njit(cache=True, fastmath=True, parallel=True)
def band_hashes_parallel(signatures, rows, key, out, n_threads):
    for t in prange(n_threads):
        lo, hi = thread_share(signatures.shape[0], t, n_threads)
        _band_hashes_range(signatures[lo:hi], rows, key, out[lo:hi])


# -- SimHash codes -------------------------------------------------------------------

@njit(inline="always")
def _band_codes_range(projections, band_bits, out):
    for j in range(projections.shape[0]):
        for band in range(out.shape[1]):
            code = np.uint64(0)
            for i in range(band_bits):
                if projections[j, band * band_bits + i] > 0.0:
                    code |= _ONE << np.uint64(i)
            out[j, band] = code


@njit(cache=True, fastmath=True)
def band_codes(projections, band_bits, out):
    """``out[j, band]`` bit i: whether vector j lies on the positive side of
    hyperplane ``band * band_bits + i``."""
    _band_codes_range(projections, band_bits, out)


@njit(cache=True, fastmath=True, parallel=True)
def band_codes_parallel(projections, band_bits, out, n_threads):
    for t in prange(n_threads):
        lo, hi = thread_share(projections.shape[0], t, n_threads)
        _band_codes_range(projections[lo:hi], band_bits, out[lo:hi])


# -- SimHash queries -----------------------------------------------------------------

@njit(inline="always")
def _bucket(sorted_codes, code):
    """The range [lo, hi) of one band's sorted codes equal to ``code``."""
    return (np.searchsorted(sorted_codes, code, side="left"),
            np.searchsorted(sorted_codes, code, side="right"))


@njit(inline="always")
def _heap_push(score, mask, last, heap_score, heap_mask, heap_last, size):
    """Add an entry to the binary min-heap of its first ``size`` slots; the new size."""
    i = size
    while i > 0:
        parent = (i - 1) >> 1
        if heap_score[parent] <= score:
            break
        heap_score[i], heap_mask[i], heap_last[i] = heap_score[parent], heap_mask[parent], heap_last[parent]
        i = parent
    heap_score[i], heap_mask[i], heap_last[i] = score, mask, last
    return size + 1


@njit(inline="always")
def _heap_drop_top(heap_score, heap_mask, heap_last, size):
    """Remove the smallest entry (slot 0); the new size."""
    size -= 1
    score, mask, last = heap_score[size], heap_mask[size], heap_last[size]
    i = 0
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size and heap_score[child + 1] < heap_score[child]:
            child += 1
        if score <= heap_score[child]:
            break
        heap_score[i], heap_mask[i], heap_last[i] = heap_score[child], heap_mask[child], heap_last[child]
        i = child
    heap_score[i], heap_mask[i], heap_last[i] = score, mask, last
    return size


@njit(inline="always")
def _probe_masks(margins, num_probes, masks, heap_score, heap_mask, heap_last):
    """The ``num_probes`` sets of bits to flip with the smallest total score (the sum
    of the bits' squared margins), in increasing order, as masks over the band's bits;
    the number written (fewer when the band has fewer other buckets).

    Query-directed probing (Lv et al., 2007): with the bits sorted by score, every
    set is reached exactly once from {first} by "shift" (replace the largest member
    by the next bit) and "expand" (add the next bit), neither of which lowers the
    score; so popping the cheapest pending set from a min-heap enumerates them in
    order. Each pop adds at most 2, so the heap (scratch arrays of 2 num_probes + 1
    slots) never overflows."""
    width = margins.shape[0]
    scores = margins * margins
    by_score = np.argsort(scores)
    size = _heap_push(scores[by_score[0]], _ONE << np.uint64(by_score[0]), 0,
                      heap_score, heap_mask, heap_last, 0)
    written = 0
    while written < num_probes and size > 0:
        score, mask, last = heap_score[0], heap_mask[0], heap_last[0]
        size = _heap_drop_top(heap_score, heap_mask, heap_last, size)
        masks[written] = mask
        written += 1
        if last + 1 < width:
            nxt = np.uint64(by_score[last + 1])
            extra = scores[by_score[last + 1]]
            shifted = (mask ^ (_ONE << np.uint64(by_score[last]))) | (_ONE << nxt)
            size = _heap_push(score - scores[by_score[last]] + extra, shifted, last + 1,
                              heap_score, heap_mask, heap_last, size)
            size = _heap_push(score + extra, mask | (_ONE << nxt), last + 1,
                              heap_score, heap_mask, heap_last, size)
    return written


@njit(inline="always")
def _query_range(first, last, queries, projections, query_codes, sorted_codes, order,
                 vectors, ids, band_bits, num_probes, out_ids, out_distances):
    dim = vectors.shape[1]
    k = out_ids.shape[1]
    num_bands = query_codes.shape[1]
    # Per query: the buckets' ranges in their band's sorted order, then their rows,
    # sorted and deduplicated (no per-query state of the index's size, so a single
    # query on a large index costs only what it finds).
    range_band = np.empty(num_bands * (1 + num_probes), dtype=np.int64)
    range_lo = np.empty_like(range_band)
    range_hi = np.empty_like(range_band)
    masks = np.empty(max(num_probes, 1), dtype=np.uint64)
    heap_score = np.empty(2 * num_probes + 1)
    heap_mask = np.empty(2 * num_probes + 1, dtype=np.uint64)
    heap_last = np.empty(2 * num_probes + 1, dtype=np.int64)
    for q in range(first, last):
        n_ranges = 0
        total = 0
        for band in range(num_bands):
            code = query_codes[q, band]
            written = 0
            if num_probes > 0:
                written = _probe_masks(projections[q, band * band_bits:(band + 1) * band_bits],
                                       num_probes, masks, heap_score, heap_mask, heap_last)
            for m in range(written + 1):
                probe = code if m == 0 else code ^ masks[m - 1]
                lo, hi = _bucket(sorted_codes[band], probe)
                if hi > lo:
                    range_band[n_ranges], range_lo[n_ranges], range_hi[n_ranges] = band, lo, hi
                    n_ranges += 1
                    total += hi - lo
        rows = np.empty(total, dtype=np.int64)
        filled = 0
        for i in range(n_ranges):
            for p in range(range_lo[i], range_hi[i]):
                rows[filled] = order[range_band[i], p]
                filled += 1
        rows.sort()
        count = 0
        for i in range(total):
            if count == 0 or rows[i] != rows[count - 1]:
                rows[count] = rows[i]
                count += 1
        distances = np.empty(count)
        for c in range(count):
            row = rows[c]
            dot = 0.0
            for d in range(dim):
                dot += np.float64(queries[q, d]) * np.float64(vectors[row, d])
            # Both are unit vectors rounded to float32: clip the rounding off the ends.
            distances[c] = min(max(1.0 - dot, 0.0), 2.0)
        # The k nearest; ties go to the row added first (stable sort over sorted rows).
        ranked = np.argsort(distances, kind="mergesort")
        for i in range(k):
            if i < count:
                out_ids[q, i] = ids[rows[ranked[i]]]
                out_distances[q, i] = distances[ranked[i]]
            else:
                out_ids[q, i] = -1
                out_distances[q, i] = np.inf


@njit(cache=True, fastmath=_FAST_FINITE)
def simhash_query(queries, projections, query_codes, sorted_codes, order, vectors, ids,
                  band_bits, num_probes, out_ids, out_distances):
    """``queries`` (n, dim) and ``vectors`` (rows, dim): unit vectors (float32);
    ``projections`` (n, bits): the queries' signed distances to the unit hyperplanes;
    ``query_codes`` (n, bands); ``sorted_codes``/``order`` (bands, rows): each band's
    codes sorted and the rows in that order; ``num_probes`` at most 2**band_bits - 1.
    Writes the k nearest rows' ids and cosine distances (1 - cos), -1 and inf past
    the candidates found."""
    _query_range(0, queries.shape[0], queries, projections, query_codes, sorted_codes, order,
                 vectors, ids, band_bits, num_probes, out_ids, out_distances)


@njit(cache=True, fastmath=_FAST_FINITE, parallel=True)
def simhash_query_parallel(queries, projections, query_codes, sorted_codes, order, vectors, ids,
                           band_bits, num_probes, out_ids, out_distances, n_threads):
    for t in prange(n_threads):
        lo, hi = thread_share(queries.shape[0], t, n_threads)
        _query_range(lo, hi, queries, projections, query_codes, sorted_codes, order,
                     vectors, ids, band_bits, num_probes, out_ids, out_distances)
