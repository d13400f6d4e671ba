"""Which form of a batch kernel runs: serial, or split over numba's threads.

The batch size from which splitting pays is measured on first use on this machine and
remembered (``_wisdom``), keyed by the CPU and thread count: a threshold tuned on one CPU
was 3x off on another. Kernels count their work in "keys" of a few ns (one hash64 each);
the measurement times a kernel of that cost. ``MLSYS_PARALLEL_MIN_KEYS`` forces a
threshold (0: always split; a huge number: never), for tests and for whoever knows better."""
from __future__ import annotations

import math
import os
import time

import numba
import numpy as np
from numba import njit, prange

from ._environment import machine_key
from ._wisdom import remembered

ENVIRONMENT = "MLSYS_PARALLEL_MIN_KEYS"
SIZES = tuple(1 << p for p in range(10, 22))  # 1 Ki to 2 Mi keys: ~1 us to ~5 ms of work serially
MARGIN = 0.8  # splitting must take under 80% of the serial time to be worth the risk of a busy team



def run(kernels, n_keys: int, *args) -> None:
    """Call ``serial(*args)`` or, for a batch of ``n_keys`` at least the measured threshold
    with several threads available, ``parallel(*args, n_threads)``; ``kernels`` is the pair
    (serial, parallel). The thread count is read here, never inside a cached kernel, so it
    follows ``numba.set_num_threads``."""
    serial, parallel = kernels
    n_threads = numba.get_num_threads()
    if n_threads > 1 and n_keys >= parallel_min_keys(n_threads):
        parallel(*args, n_threads)
    else:
        serial(*args)


def parallel_min_keys(n_threads: int) -> float:
    """Keys from which a batch is split over ``n_threads`` threads (math.inf: never)."""
    forced = os.environ.get(ENVIRONMENT)
    if forced is not None:
        if not forced.isdigit():
            raise ValueError(f"{ENVIRONMENT} must be a whole number of keys, got {forced!r}")
        return int(forced)
    value = remembered("threads", f"{machine_key()} / {n_threads} threads",
                       lambda: _entry(measure_threshold(n_threads)), _valid)["parallel_min_keys"]
    return math.inf if value is None else value


def _entry(threshold: float) -> dict:
    return {"parallel_min_keys": None if math.isinf(threshold) else int(threshold)}


def _valid(entry: dict) -> bool:
    value = entry.get("parallel_min_keys", False)
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)


def measure_threshold(n_threads: int, repeats: int = 3) -> float:
    """The smallest of SIZES from which the split kernel beats the serial one by MARGIN at
    that size and every larger one (best of ``repeats`` each); math.inf when it never does."""
    keys = np.arange(SIZES[-1], dtype=np.uint64)
    out = np.empty_like(keys)
    _mix_serial(keys[:1], out[:1])  # compile (or load) both before any clock starts
    _mix_parallel(keys[:1], out[:1], n_threads)
    wins = []
    for size in SIZES:
        serial = _best(lambda: _mix_serial(keys[:size], out[:size]), repeats)
        split = _best(lambda: _mix_parallel(keys[:size], out[:size], n_threads), repeats)
        wins.append(split < MARGIN * serial)
    for i, size in enumerate(SIZES):
        if all(wins[i:]):
            return size
    return math.inf


def _best(call, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


@njit(inline="always")
def _mix(x):
    """splitmix64's finaliser: what one key costs in the sketches' kernels."""
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@njit(cache=True)
def _mix_serial(keys, out):
    for i in range(len(keys)):
        out[i] = _mix(keys[i])


@njit(cache=True, parallel=True)
def _mix_parallel(keys, out, n_threads):
    chunk = (len(keys) + n_threads - 1) // n_threads
    for t in prange(n_threads):
        for i in range(t * chunk, min(len(keys), (t + 1) * chunk)):
            out[i] = _mix(keys[i])
