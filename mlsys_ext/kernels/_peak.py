"""The machine's measured matrix-multiply rate: the yardstick for every kernel's GFLOP/s."""
from __future__ import annotations

import time

import numpy as np

_best: dict[tuple, float] = {}  # (dtype name, n, repeats): the best GFLOP/s measured in this process


def matmul_peak_gflops(dtype: str = "float32", n: int = 1024, repeats: int = 5, again: bool = False) -> float:
    """Best GFLOP/s of numpy's ``n x n`` matmul (its BLAS, all its threads) over ``repeats`` runs;
    measured once per process and dtype, however the dtype is spelled, so every panel
    and benchmark compares against the same figure. ``again``: measure once more and keep
    the better figure (a kernel measured above the peak says the peak was measured on a
    busy machine)."""
    key = np.dtype(dtype).name, int(n), int(repeats)
    if again or key not in _best:
        _best[key] = max(_best.get(key, 0.0), _measure(*key))
    return _best[key]


def _measure(dtype: str, n: int, repeats: int) -> float:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    a @ b  # the first call pays for BLAS's thread start-up
    best = min(_seconds(a, b) for _ in range(repeats))
    return 2.0 * n**3 / best / 1e9


def _seconds(a: np.ndarray, b: np.ndarray) -> float:
    start = time.perf_counter()
    a @ b
    return time.perf_counter() - start
