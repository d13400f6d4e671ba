"""numba.cuda kernels of k-means: one thread per point, centroids staged in shared memory.

Each thread scores its point against every centroid, keeps the best, and adds the
point into the global centroid sums with atomics (float64, so the order the
atomics land in barely changes the result). Only ever run here under numba's
CUDA simulator: this machine has no GPU.
"""
import math

from numba import cuda, float64

THREADS_PER_BLOCK = 128
# Centroid values staged in shared memory (48 KiB of float64); larger K x D reads them from global memory.
SHARED_VALUES = 6144


def blocks_for(n: int) -> int:
    return max(1, math.ceil(n / THREADS_PER_BLOCK))


@cuda.jit(cache=True)
def lloyd_kernel(X, centroids, half_norms, labels, best_scores, accumulate, sums, counts):
    """Assign every point; with ``accumulate``, also add it into ``sums`` and ``counts``
    (which must start at zero). ``best_scores[i]`` gets the point's ``‖c‖²/2 - x·c``."""
    staged = cuda.shared.array(SHARED_VALUES, float64)
    k, n_dims = centroids.shape
    use_shared = k * n_dims <= SHARED_VALUES
    if use_shared:
        for j in range(cuda.threadIdx.x, k * n_dims, cuda.blockDim.x):
            staged[j] = centroids[j // n_dims, j % n_dims]
    cuda.syncthreads()
    i = cuda.grid(1)
    if i >= X.shape[0]:
        return
    best = 0
    best_score = 0.0
    for c in range(k):
        dot = 0.0
        for d in range(n_dims):
            value = staged[c * n_dims + d] if use_shared else centroids[c, d]
            dot += X[i, d] * value
        score = half_norms[c] - dot
        if c == 0 or score < best_score:
            best_score = score
            best = c
    labels[i] = best
    best_scores[i] = best_score
    if accumulate:
        cuda.atomic.add(counts, best, 1)
        for d in range(n_dims):
            cuda.atomic.add(sums, (best, d), X[i, d])
