"""``kmeans``: Lloyd's algorithm (or mini-batches) on numba, numba.cuda, CuPy or numpy.

The public function checks and allocates; a *runner* per backend does the passes
over the data (assign and accumulate, assign with distances, distances), and one driver
loop, the same for every backend, turns their sums into centroids. The loop is
scikit-learn's Lloyd loop step for step (tolerance scaled by the mean variance,
stop when no label changes, empty clusters moved to the farthest points, a final
assignment against the last centroids, and the data centred first), so from the
same initial centroids both reach the same inertia.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import NamedTuple

import numpy as np
import pandas as pd

from ._backends import resolve_backend
from ._jit import check_threads, compile_kernel, numba_threads, one_blas_thread

INITS = ("k-means++", "random")


@dataclass
class KMeansResult:
    """What ``kmeans`` found, and how it got there."""

    centroids: np.ndarray = field(repr=False)  # (k, D), X's dtype
    labels: np.ndarray = field(repr=False)  # (N,) int32: each point's centroid
    inertia: float  # sum of squared distances of points to their centroid
    n_iter: int  # Lloyd iterations (mini-batch: epochs) run
    converged: bool  # stopped by tol or unchanged labels, not by max_iter
    history: pd.DataFrame = field(repr=False)  # per iteration: iteration, inertia, seconds
    backend: str = "numpy"
    compile_seconds: float = 0.0  # first-call JIT time, not counted in history
    path: np.ndarray | None = field(default=None, repr=False)  # trace=True: (n_iter + 1, k, D) centroids


def kmeans(X, k: int, init="k-means++", max_iter: int = 300, tol: float = 1e-4, seed=None,
           backend: str = "auto", batch_size: int | None = None, threads: int | None = None,
           trace: bool = False) -> KMeansResult:
    """Cluster the rows of ``X`` (N, D) into ``k`` groups.

    ``init``: "k-means++" (scikit-learn's greedy variant), "random" (k distinct
    rows) or a (k, D) array of starting centroids. ``tol`` is relative to the
    mean per-feature variance of X, as in scikit-learn. ``batch_size``: mini-batch
    k-means (each centroid moves towards its batch mean with step 1/points-seen);
    ``max_iter`` then counts passes over the data. ``threads``: numba's threads
    (default all). History times exclude compilation (``compile_seconds``). ``trace``:
    keep the centroids at the start and after each iteration in ``path``, to draw them moving.
    """
    X = _check_data(X)
    k = _check_k(k, X)
    max_iter = _check_count("max_iter", max_iter, 1)
    if isinstance(tol, bool) or not isinstance(tol, Real) or not tol >= 0:
        raise ValueError(f"tol must be a number >= 0, got {tol!r}")
    if batch_size is not None:
        batch_size = min(_check_count("batch_size", batch_size, 1), X.shape[0])
    threads = check_threads(threads)
    if not isinstance(trace, bool):
        raise TypeError(f"trace must be True or False, got {trace!r}")
    backend = resolve_backend(backend)
    rng = np.random.default_rng(seed)
    X, mean, squared_norm_total, centring_compile_seconds = _centred(X)
    centroids = _initial_centroids(X, k, init, mean, rng)

    runner = _RUNNERS[backend](X, k, threads)
    tol = squared_norm_total / X.size * tol  # X is centred: its mean square is the mean variance
    path = [centroids] if trace else None
    with runner.active():
        if batch_size is None:
            centroids, labels, distances, history, converged = _lloyd(runner, centroids, max_iter, tol,
                                                                      squared_norm_total, path)
        else:
            centroids, labels, distances, history, converged = _mini_batch(runner, X, centroids, max_iter, tol,
                                                                           batch_size, rng, path)
        inertia = float(distances.sum())
    return KMeansResult(centroids=centroids + mean, labels=runner.to_host(labels), inertia=inertia,
                        n_iter=len(history), converged=converged,
                        history=pd.DataFrame(history, columns=["iteration", "inertia", "seconds"]),
                        backend=backend, compile_seconds=centring_compile_seconds + runner.compile_seconds,
                        path=None if path is None else np.array(path) + mean)


def kmeans_plusplus(X, k: int, seed=None) -> np.ndarray:
    """The k-means++ starting centroids ``kmeans`` uses for ``init="k-means++"`` and this ``seed``."""
    X = _check_data(X)
    k = _check_k(k, X)
    centred = _centred(X).X
    chosen = _kmeans_plus_plus(centred, k, np.random.default_rng(seed))
    return np.asarray(X[chosen], dtype=centred.dtype)  # the rows themselves: kmeans centres init as it centres X


def _lloyd(runner, centroids, max_iter, tol, squared_norm_total, path):
    X = runner.X
    labels = runner.xp.full(X.shape[0], -1, dtype=np.int32)  # so every label counts as changed at first
    history = []
    unchanged = converged = False
    for iteration in range(1, max_iter + 1):
        start = time.perf_counter()
        sums, counts, score_sum, changed = runner.lloyd(X, centroids, labels)
        if not counts.all():
            _move_empty_clusters(runner, centroids, labels, sums, counts)
        updated = (sums / counts[:, None]).astype(centroids.dtype)
        shift = float(((updated.astype(np.float64) - centroids) ** 2).sum())
        # inertia of the labels just chosen, against the centroids they were chosen for
        history.append((iteration, squared_norm_total + 2.0 * score_sum, time.perf_counter() - start))
        centroids = updated
        if path is not None:
            path.append(centroids)
        unchanged = changed == 0
        if unchanged or shift <= tol:
            converged = True
            break
    if unchanged:
        distances = runner.squared_distances(X, centroids, labels)
    else:
        distances = runner.assign(X, centroids, labels)  # labels follow the last centroids
    return centroids, labels, distances, history, converged


def _move_empty_clusters(runner, centroids, labels, sums, counts):
    """Give each empty cluster one of the points farthest from their centroid, taking
    the point out of its old cluster's sum (scikit-learn's rule)."""
    empty = np.flatnonzero(counts == 0)
    distances = runner.to_host(runner.squared_distances(runner.X, centroids, labels))
    farthest = np.argsort(-distances, kind="stable")[: len(empty)]
    host_labels = runner.to_host(labels)
    X = runner.X_host
    for cluster, point in zip(empty, farthest):
        old = host_labels[point]
        sums[old] -= X[point]
        counts[old] -= 1
        sums[cluster] = X[point]
        counts[cluster] = 1


def _mini_batch(runner, X, centroids, max_iter, tol, batch_size, rng, path):
    centroids = centroids.astype(np.float64)
    seen = np.zeros(len(centroids), dtype=np.int64)
    batch_labels = runner.xp.zeros(batch_size, dtype=np.int32)
    steps = math.ceil(X.shape[0] / batch_size)
    history = []
    converged = False
    for epoch in range(1, max_iter + 1):
        start = time.perf_counter()
        before = centroids.copy()
        order = rng.permutation(X.shape[0])
        estimate = 0.0
        for step in range(steps):
            points = X[np.sort(order[step * batch_size:(step + 1) * batch_size])]
            labels = batch_labels[: len(points)]
            sums, counts, score_sum, _ = runner.lloyd(runner.to_device(points), centroids.astype(X.dtype), labels)
            seen += counts
            moved = counts > 0
            centroids[moved] += (sums[moved] - counts[moved, None] * centroids[moved]) / seen[moved, None]
            estimate += float(np.einsum("ij,ij->", points, points, dtype=np.float64)) + 2.0 * score_sum
        never = np.flatnonzero(seen == 0)
        centroids[never] = X[rng.choice(X.shape[0], len(never), replace=False)]
        # each batch scored against the centroids as they were when it arrived
        history.append((epoch, estimate, time.perf_counter() - start))
        if path is not None:
            path.append(centroids.astype(X.dtype))
        if float(((centroids - before) ** 2).sum()) <= tol:
            converged = True
            break
    centroids = centroids.astype(X.dtype)
    labels = runner.xp.zeros(X.shape[0], dtype=np.int32)
    distances = runner.assign(runner.X, centroids, labels)
    return centroids, labels, distances, history, converged


# ---- checks and initialisation ---------------------------------------------------------------

def _check_data(X) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2 or 0 in X.shape:
        raise ValueError(f"X must be a non-empty 2-D array (points x features), got shape {X.shape}")
    if X.dtype.kind not in "iub" and X.dtype not in (np.float32, np.float64):
        raise TypeError(f"X must hold float32 or float64 (or integers), got {X.dtype}")
    if X.dtype.kind == "f" and not np.isfinite(X).all():
        raise ValueError("X contains NaN or infinity")
    return X


class _Centred(NamedTuple):
    X: np.ndarray  # X minus its column means: a new C-contiguous array, float64 for integer X
    mean: np.ndarray  # the column means, in the centred X's dtype
    squared_norm_total: float  # ‖X - mean‖² summed in float64: N D times the mean variance
    compile_seconds: float  # loading the centring kernels, the first time


def _centred(X: np.ndarray) -> _Centred:
    """``X`` centred as scikit-learn centres it: the passes score ``‖c‖²/2 - x·c``, dropping
    ``‖x‖²``, and far from the origin that difference of large numbers cancels float32's
    digits away."""
    dtype = X.dtype if X.dtype.kind == "f" else np.dtype(np.float64)
    if X.dtype.kind == "f" and X.flags.c_contiguous and X.shape[1] > 1:
        # numba's two passes give numpy's mean to the bit (see ``column_sums``) in a quarter
        # of the time, with the squares summed while centring
        from . import _kmeans_numba as kernels

        sums = np.empty(X.shape[1])
        compile_seconds = compile_kernel(kernels.column_sums, X, sums)
        kernels.column_sums(X, sums)
        mean = (sums / X.shape[0]).astype(dtype)
        centred = np.empty_like(X)
        compile_seconds += compile_kernel(kernels.centre, X, mean, centred)
        return _Centred(centred, mean, float(kernels.centre(X, mean, centred)), compile_seconds)
    # one column, or another layout: numpy's own sum order (pairwise down a contiguous column)
    mean = X.mean(axis=0, dtype=np.float64).astype(dtype)  # a float32 running sum over many rows drifts
    centred = np.subtract(X, mean, dtype=dtype, order="C")
    return _Centred(centred, mean, float(np.einsum("ij,ij->", centred, centred, dtype=np.float64)), 0.0)


def _check_k(k, X) -> int:
    k = _check_count("k", k, 1)
    if k > X.shape[0]:
        raise ValueError(f"k={k} is more than the {X.shape[0]} points in X")
    return k


def _check_count(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _initial_centroids(X: np.ndarray, k: int, init, mean: np.ndarray, rng) -> np.ndarray:
    """Starting centroids for the centred ``X``; an init array is shifted by X's ``mean`` as X was."""
    if isinstance(init, str):
        if init == "random":
            return X[np.sort(rng.choice(X.shape[0], k, replace=False))]
        if init == "k-means++":
            return X[_kmeans_plus_plus(X, k, rng)]
        raise ValueError(f"init must be one of {', '.join(INITS)} or a (k, D) array, got {init!r}")
    centroids = np.asarray(init)
    if centroids.shape != (k, X.shape[1]):
        raise ValueError(f"init array must have shape (k, D) = {(k, X.shape[1])}, got {centroids.shape}")
    if centroids.dtype.kind not in "iuf" or not np.isfinite(centroids).all():
        raise ValueError("init array must hold finite numbers")
    return np.subtract(centroids, mean, dtype=X.dtype)


def _kmeans_plus_plus(X: np.ndarray, k: int, rng) -> np.ndarray:
    """Greedy k-means++, the rows chosen: each new centroid is the best of 2 + ln k candidates
    drawn with probability proportional to the squared distance to the nearest chosen one."""
    n = X.shape[0]
    trials = 2 + int(np.log(k))
    squared_norms = np.einsum("ij,ij->i", X, X, dtype=np.float64)

    def distances_to(rows):
        dots = (X @ X[rows].T).T  # in X's dtype: a float64 copy of X would cost more than the product
        d = squared_norms[None, :] - 2.0 * dots + squared_norms[rows][:, None]
        return np.maximum(d, 0.0)

    chosen = [int(rng.integers(n))]
    closest = distances_to(np.array(chosen))[0]
    for _ in range(1, k):
        total = closest.sum()
        if total <= 0:  # every point sits on a centroid already: any new one will do
            candidates = rng.integers(n, size=trials)
        else:
            candidates = np.searchsorted(np.cumsum(closest), rng.random(trials) * total)
            candidates = np.minimum(candidates, n - 1)
        options = np.minimum(closest[None, :], distances_to(candidates))
        best = int(np.argmin(options.sum(axis=1)))
        chosen.append(int(candidates[best]))
        closest = options[best]
    return np.array(chosen)


# ---- runners: the passes over the data, one class per backend ---------------------------------

class _NumbaRunner:
    """numba CPU: fused GEMM-assign-accumulate on ``threads`` threads, one BLAS thread each."""

    xp = np

    def __init__(self, X, k, threads):
        from . import _kmeans_numba as kernels

        self.kernels, self.threads = kernels, threads
        self.X = self.X_host = X
        self.sums = np.empty((threads, k, X.shape[1]))
        self.counts = np.empty((threads, k), dtype=np.int64)
        self.score_sums = np.empty(threads)
        self.changes = np.empty(threads, dtype=np.int64)
        centroids = np.empty((k, X.shape[1]), dtype=X.dtype)
        half_norms = np.empty(k, dtype=X.dtype)
        labels = np.empty(1, dtype=np.int32)
        self.compile_seconds = (
            compile_kernel(kernels.lloyd_pass, X, centroids, half_norms, labels, self.sums, self.counts,
                           self.score_sums, self.changes, threads)
            + compile_kernel(kernels.assign_pass, X, centroids, half_norms, labels, np.empty(1), threads)
            + compile_kernel(kernels.squared_distances, X, centroids, labels, np.empty(1)))

    @contextlib.contextmanager
    def active(self):
        with one_blas_thread(), numba_threads(self.threads):
            yield

    def lloyd(self, X, centroids, labels):
        self.kernels.lloyd_pass(X, centroids, _half_norms(centroids), labels, self.sums, self.counts,
                                self.score_sums, self.changes, self.threads)
        return (self.sums.sum(axis=0), self.counts.sum(axis=0), float(self.score_sums.sum()),
                int(self.changes.sum()))

    def assign(self, X, centroids, labels):
        distances = np.empty(X.shape[0])
        self.kernels.assign_pass(X, centroids, _half_norms(centroids), labels, distances, self.threads)
        return distances

    def squared_distances(self, X, centroids, labels):
        out = np.empty(X.shape[0])
        self.kernels.squared_distances(X, centroids, labels, out)
        return out

    to_device = to_host = staticmethod(np.asarray)


def _half_norms(centroids):
    return 0.5 * np.einsum("ij,ij->i", centroids, centroids)


class _ArrayModuleRunner:
    """numpy, or CuPy with the same code (``_kmeans_xp``): X is moved to the device once."""

    compile_seconds = 0.0

    def __init__(self, xp, X, k, threads):
        from . import _kmeans_xp as passes

        self.xp, self.passes = xp, passes
        self.X_host = X
        self.X = xp.asarray(X)

    @contextlib.contextmanager
    def active(self):
        yield

    def lloyd(self, X, centroids, labels):
        sums, counts, score_sum, changed = self.passes.lloyd_pass(self.xp, X, self.xp.asarray(centroids), labels)
        return self.to_host(sums), self.to_host(counts), score_sum, changed

    def assign(self, X, centroids, labels):
        self.passes.assign(self.xp, X, self.xp.asarray(centroids), labels)
        return self.squared_distances(X, centroids, labels)

    def squared_distances(self, X, centroids, labels):
        return self.passes.squared_distances(self.xp, X, self.xp.asarray(centroids), labels)

    def to_device(self, array):
        return self.xp.asarray(array)

    def to_host(self, array):
        return array.get() if hasattr(array, "get") else np.asarray(array)


def _cupy_runner(X, k, threads):
    import cupy

    return _ArrayModuleRunner(cupy, X, k, threads)


class _CudaRunner:
    """numba.cuda: one thread per point; labels come back to the host after each pass."""

    xp = np
    compile_seconds = 0.0  # numba.cuda compiles at the first launch, inside the first pass

    def __init__(self, X, k, threads):
        from numba import cuda

        from . import _kmeans_cuda as kernels

        self.cuda, self.kernels = cuda, kernels
        self.X = self.X_host = X
        self.device_X = cuda.to_device(X)

    @contextlib.contextmanager
    def active(self):
        yield

    def _launch(self, X, centroids, labels, accumulate):
        cuda = self.cuda
        device_X = self.device_X if X is self.X else cuda.to_device(X)
        k, n_dims = centroids.shape
        sums = cuda.to_device(np.zeros((k, n_dims)))
        counts = cuda.to_device(np.zeros(k, dtype=np.int64))
        device_labels = cuda.device_array(X.shape[0], dtype=np.int32)
        best_scores = cuda.device_array(X.shape[0], dtype=np.float64)
        half_norms = 0.5 * np.einsum("ij,ij->i", centroids, centroids, dtype=np.float64)
        self.kernels.lloyd_kernel[self.kernels.blocks_for(X.shape[0]), self.kernels.THREADS_PER_BLOCK](
            device_X, cuda.to_device(centroids), cuda.to_device(half_norms), device_labels, best_scores,
            accumulate, sums, counts)
        new_labels = device_labels.copy_to_host()
        changed = int(np.count_nonzero(new_labels != labels))
        labels[:] = new_labels
        return sums.copy_to_host(), counts.copy_to_host(), float(best_scores.copy_to_host().sum()), changed

    def lloyd(self, X, centroids, labels):
        return self._launch(X, centroids, labels, True)

    def assign(self, X, centroids, labels):
        self._launch(X, centroids, labels, False)
        return self.squared_distances(X, centroids, labels)

    def squared_distances(self, X, centroids, labels):
        from . import _kmeans_xp as passes

        return passes.squared_distances(np, X, centroids, labels)

    to_device = to_host = staticmethod(np.asarray)


_RUNNERS = {
    "numba": _NumbaRunner,
    "numpy": lambda X, k, threads: _ArrayModuleRunner(np, X, k, threads),
    "cupy": _cupy_runner,
    "numba-cuda": _CudaRunner,
}
