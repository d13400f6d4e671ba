"""k-means: this package against scikit-learn and faiss, per Lloyd iteration and per whole call.

N = 1,000,000 points, D = 32, K = 64, float32, the same initial centroids for all.
The whole call is what a user times: ``kmeans(X, K, init=..., max_iter=10, tol=0)``
against ``KMeans(...).fit(X)``, checks, copies and the final assignment included.
For the per-iteration figure each peer's fixed costs are taken out by timing a
short and a long run and dividing the difference by the extra iterations.
Run with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (see bench_kernels.py).
"""
from __future__ import annotations

import time

import numpy as np

from mlsys_ext import describe_machine
from mlsys_ext.kernels import kmeans, matmul_peak_gflops

N, D, K = 1_000_000, 32, 64
SHORT, LONG = 2, 12  # iterations; tol=0, so every run does all of them
WHOLE = 10  # iterations of the whole call
TARGET = 0.8  # this package's time, per iteration and per whole call, at most this share of scikit-learn's


def _ours(X, init):
    run = kmeans(X, K, init=init, max_iter=LONG, tol=0, backend="numba")
    start = time.perf_counter()
    kmeans(X, K, init=init, max_iter=WHOLE, tol=0, backend="numba")
    whole = time.perf_counter() - start
    return run.history.seconds.to_numpy()[1:], whole, run.compile_seconds  # the first pass also warms caches


def _sklearn(X, init):
    from sklearn.cluster import KMeans

    def seconds(iterations):
        start = time.perf_counter()
        fitted = KMeans(K, init=init, n_init=1, max_iter=iterations, tol=0, algorithm="lloyd").fit(X)
        assert fitted.n_iter_ == iterations
        return time.perf_counter() - start

    return (seconds(LONG) - seconds(SHORT)) / (LONG - SHORT), seconds(WHOLE)


def _faiss(X, init):
    import faiss

    def seconds(iterations):
        model = faiss.Kmeans(D, K, niter=iterations, seed=0, verbose=False)
        model.cp.max_points_per_centroid = N  # faiss samples 256 points per centroid unless told not to
        start = time.perf_counter()
        model.train(X, init_centroids=init)
        return time.perf_counter() - start

    return (seconds(LONG) - seconds(SHORT)) / (LONG - SHORT)


def bench_kmeans(peak_gflops: float, repeats: int = 3) -> str:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, D), dtype=np.float32)
    init = X[rng.choice(N, K, replace=False)].copy()
    ours, ours_whole, sklearn_whole, compile_seconds = [], [], [], 0.0
    peers = {"scikit-learn": [], "faiss": []}
    for _ in range(repeats):  # interleaved, so a slow spell of the machine hits all alike
        times, whole, seconds = _ours(X, init)
        ours.extend(times)
        ours_whole.append(whole)
        compile_seconds += seconds
        per_iteration, whole = _sklearn(X, init)
        peers["scikit-learn"].append(per_iteration)
        sklearn_whole.append(whole)
        peers["faiss"].append(_faiss(X, init))
    flops = 2.0 * N * K * D
    rows = [("this (numba)", ours)] + list(peers.items())
    sklearn = float(np.median(peers["scikit-learn"]))
    lines = [f"k-means, N={N:,} D={D} K={K} float32, time per Lloyd iteration (median of {repeats} runs)",
             f"{'implementation':<16}{'ms/iter':>10}{'spread':>9}{'vs sklearn':>12}{'GFLOP/s':>10}{'% peak':>8}"]
    for name, times in rows:
        median = float(np.median(times))
        spread = 100 * (np.max(times) - np.min(times)) / 2 / median
        lines.append(f"{name:<16}{1e3 * median:>10.1f}{f'±{spread:.0f}%':>9}{median / sklearn:>12.2f}"
                     f"{flops / median / 1e9:>10.1f}{100 * flops / median / 1e9 / peak_gflops:>8.0f}")
    ratio = float(np.median(ours)) / sklearn
    verdict = "PASS" if ratio <= TARGET else "MISS"
    lines.append(f"target: at most {TARGET}x scikit-learn per iteration: {verdict} ({ratio:.2f}x); "
                 f"numba compile (first call, not in the times): {compile_seconds:.2f} s")
    ours_call, sklearn_call = float(np.median(ours_whole)), float(np.median(sklearn_whole))
    lines.append(f"whole call, {WHOLE} iterations (median of {repeats}): this {ours_call:.3f} s "
                 f"(min {min(ours_whole):.3f}), scikit-learn {sklearn_call:.3f} s (min {min(sklearn_whole):.3f}); "
                 f"target: at most {TARGET}x scikit-learn's whole call: "
                 f"{'PASS' if ours_call <= TARGET * sklearn_call else 'MISS'} ({ours_call / sklearn_call:.2f}x)")
    return "\n".join(lines)


if __name__ == "__main__":
    print(describe_machine(), end="\n\n")
    print(bench_kmeans(matmul_peak_gflops()))
