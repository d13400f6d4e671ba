"""numba CPU kernels of k-means: one fused assign-and-accumulate pass per Lloyd iteration.

The assign step is compute-bound (2 N K D flops), so each thread scores a chunk of
points against all centroids with one BLAS gemm (scipy's, called directly, reading
the chunk's rows in place as a transposed operand; the caller limits BLAS to one
thread per numba thread), then, while the chunk's scores are in cache, picks
each point's nearest centroid and adds the point into that thread's own centroid
sums. Scores are laid out (K, CHUNK) so the arg-min runs across points: a
compare-and-select over contiguous values, which vectorises (a per-point arg-min
over K does not, and cost more than the GEMM). ``‖x‖²`` is the same for every
centroid, so the score is ``‖c‖²/2 - x·c`` and ``‖x - c‖² = ‖x‖² + 2 score``. The last
pass (labels for the final centroids) also writes each point's exact squared distance, so
the inertia takes no pass of its own.
"""
import llvmlite.binding as llvm
import numba
import numpy as np
from numba.core import types
from numba.extending import get_cython_function_address

# Points per BLAS call: the (K, CHUNK) scores stay in L1 for the arg-min and the
# accumulation; for K = 64, D = 32 (float32) 128 was fastest of 64 ... 1024.
CHUNK = 128


def _gemm(name: str):
    """scipy's BLAS ``name`` (sgemm, dgemm), every argument a pointer, as Fortran takes them.
    Linked by a symbol of this package's (its address given to LLVM in each process), not
    called through a ctypes pointer: numba cannot cache a kernel holding a pointer."""
    symbol = f"mlsys_ext_{name}"
    llvm.add_symbol(symbol, get_cython_function_address("scipy.linalg.cython_blas", name))
    return types.ExternalFunction(symbol, types.void(*[types.voidptr] * 13))


_SGEMM, _DGEMM = _gemm("sgemm"), _gemm("dgemm")
_TRANS_FLAGS = np.frombuffer(b"TN", dtype=np.uint8)  # gemm's transa, transb: the first operand transposed


@numba.njit(cache=True, nogil=True, inline="always")
def _score_chunk(X, start, m, centroids, scores, dims, one_zero):
    """scores[c, i] = centroids[c] . X[start + i] for i < m: a (K, CHUNK) row-major array is
    gemm's column-major (CHUNK, K) X_chunk^T-as-stored times centroids^T-as-stored, so both
    operands are read where they lie. (numba's np.dot would need the chunk transposed into
    scratch and copies a transposed view at every call: the two cost 30% of the gemm.)
    X and centroids C-contiguous. ``dims``: (4,) int32 scratch for gemm's by-reference
    integers; ``one_zero``: [1, 0] in X's dtype, its alpha and beta."""
    k, d = centroids.shape
    dims[0], dims[1], dims[2], dims[3] = m, k, d, scores.shape[1]
    trans = _TRANS_FLAGS
    if X.itemsize == 4:  # float32 (the caller passes float32 or float64)
        _SGEMM(trans[0:].ctypes, trans[1:].ctypes, dims[0:].ctypes, dims[1:].ctypes, dims[2:].ctypes,
               one_zero[0:].ctypes, X[start:].ctypes, dims[2:].ctypes, centroids.ctypes, dims[2:].ctypes,
               one_zero[1:].ctypes, scores.ctypes, dims[3:].ctypes)
    else:
        _DGEMM(trans[0:].ctypes, trans[1:].ctypes, dims[0:].ctypes, dims[1:].ctypes, dims[2:].ctypes,
               one_zero[0:].ctypes, X[start:].ctypes, dims[2:].ctypes, centroids.ctypes, dims[2:].ctypes,
               one_zero[1:].ctypes, scores.ctypes, dims[3:].ctypes)


@numba.njit(fastmath=True, cache=True, nogil=True)
def _assign_chunk(X, start, stop, centroids, half_norms, labels, dims, one_zero, scores, best_scores, best_labels):
    """Label points [start, stop) of C-contiguous X; returns the sum of their best scores
    and how many labels changed. ``dims`` and ``one_zero`` (see ``_score_chunk``), ``scores``
    (K, CHUNK), ``best_scores`` and ``best_labels`` (CHUNK,) are scratch."""
    k = centroids.shape[0]
    m = stop - start
    _score_chunk(X, start, m, centroids, scores, dims, one_zero)
    for i in range(m):
        best_scores[i] = np.inf
        best_labels[i] = 0
    for c in range(k):
        half_norm = half_norms[c]
        row = scores[c]
        for i in range(m):
            score = half_norm - row[i]
            better = score < best_scores[i]
            best_scores[i] = score if better else best_scores[i]
            best_labels[i] = c if better else best_labels[i]
    score_sum = 0.0
    changed = 0
    for i in range(m):
        score_sum += best_scores[i]
        changed += labels[start + i] != best_labels[i]
        labels[start + i] = best_labels[i]
    return score_sum, changed


@numba.njit(cache=True, nogil=True, inline="always")
def _chunk_buffers(X, k, labels):
    """One thread's scratch for ``_assign_chunk``: gemm's integers and scalars, the chunk's
    scores, and the best of them."""
    return (np.empty(4, dtype=np.int32), np.array([1.0, 0.0], dtype=X.dtype), np.empty((k, CHUNK), dtype=X.dtype),
            np.empty(CHUNK, dtype=X.dtype), np.empty(CHUNK, dtype=labels.dtype))


@numba.njit(parallel=True, fastmath=True, cache=True)
def lloyd_pass(X, centroids, half_norms, labels, sums, counts, score_sums, changes, n_threads):
    """Assign every point of C-contiguous X (gemm reads its rows in place, and the
    centroids') and add it into its centroid's sum and count.

    ``sums`` (n_threads, K, D) float64, ``counts`` (n_threads, K), ``score_sums`` and
    ``changes`` (labels that moved, n_threads,) are per thread, so no two threads write
    the same cache line; the caller adds them up.
    """
    n, n_dims = X.shape
    k = centroids.shape[0]
    n_chunks = (n + CHUNK - 1) // CHUNK
    chunks_per_thread = (n_chunks + n_threads - 1) // n_threads
    for t in numba.prange(n_threads):
        sums[t] = 0.0
        counts[t] = 0
        score_sums[t] = 0.0
        changes[t] = 0
        dims, one_zero, scores, best_scores, best_labels = _chunk_buffers(X, k, labels)
        for chunk in range(t * chunks_per_thread, min((t + 1) * chunks_per_thread, n_chunks)):
            start = chunk * CHUNK
            stop = min(start + CHUNK, n)
            score_sum, changed = _assign_chunk(X, start, stop, centroids, half_norms, labels, dims, one_zero, scores,
                                               best_scores, best_labels)
            score_sums[t] += score_sum
            changes[t] += changed
            for i in range(start, stop):
                c = labels[i]
                counts[t, c] += 1
                for d in range(n_dims):
                    sums[t, c, d] += X[i, d]


@numba.njit(parallel=True, fastmath=True, cache=True)
def assign_pass(X, centroids, half_norms, labels, distances, n_threads):
    """Assign every point and write its squared distance to its centroid into ``distances``:
    the last pass of a run, so the inertia needs no pass of its own."""
    n = X.shape[0]
    k = centroids.shape[0]
    n_chunks = (n + CHUNK - 1) // CHUNK
    chunks_per_thread = (n_chunks + n_threads - 1) // n_threads
    for t in numba.prange(n_threads):
        dims, one_zero, scores, best_scores, best_labels = _chunk_buffers(X, k, labels)
        for chunk in range(t * chunks_per_thread, min((t + 1) * chunks_per_thread, n_chunks)):
            start = chunk * CHUNK
            stop = min(start + CHUNK, n)
            _assign_chunk(X, start, stop, centroids, half_norms, labels, dims, one_zero, scores, best_scores,
                          best_labels)
            for i in range(start, stop):
                distances[i] = _squared_distance(X, i, centroids, labels[i])


@numba.njit(parallel=True, fastmath=True, cache=True)
def squared_distances(X, centroids, labels, out):
    """``out[i] = ‖X[i] - centroids[labels[i]]‖²``, accumulated in float64."""
    for i in numba.prange(X.shape[0]):
        out[i] = _squared_distance(X, i, centroids, labels[i])


@numba.njit(fastmath=True, cache=True, nogil=True, inline="always")
def _squared_distance(X, i, centroids, c):
    """One point's, in float64; both kernels above inline this one loop, so they agree to the bit."""
    total = 0.0
    for d in range(X.shape[1]):
        diff = np.float64(X[i, d]) - centroids[c, d]
        total += diff * diff
    return total


# Centring is two serial passes here rather than numpy's mean, subtract and einsum: numpy
# sums a narrow C-contiguous X down its columns a row at a time, at a fraction of memory
# speed (139 us of a 0.5 ms k-means step at 10,000 x 8). No fastmath: the sums must add in
# numpy's order, so the mean is the same to the bit.

@numba.njit(cache=True, nogil=True)
def column_sums(X, sums):
    """``sums[d]`` = the float64 sum of column d, row after row: the order in which numpy's
    ``X.sum(axis=0, dtype=np.float64)`` adds a C-contiguous X of two columns or more."""
    sums[:] = 0.0
    for i in range(X.shape[0]):
        for d in range(X.shape[1]):
            sums[d] += X[i, d]


@numba.njit(cache=True, nogil=True)
def centre(X, mean, out):
    """``out = X - mean`` in X's dtype; returns the float64 sum of ``out``'s squares (one
    accumulator per column, so the adds do not wait on each other)."""
    squares = np.zeros(X.shape[1])
    for i in range(X.shape[0]):
        for d in range(X.shape[1]):
            value = X[i, d] - mean[d]
            out[i, d] = value
            squares[d] += np.float64(value) * value
    return squares.sum()
