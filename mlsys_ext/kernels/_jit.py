"""Compile numba kernels before timing them, and choose how many threads their loops use.

Compile time is kept apart from run time everywhere: a public function compiles
(or loads from numba's on-disk cache) each kernel it needs through ``compile_kernel``
before it starts its clock, and the seconds that took go into ``compile_log()``.
"""
from __future__ import annotations

import contextlib
import functools
import threading
import time

import numba
import numpy as np
import pandas as pd

_log: list[tuple[str, str, float]] = []
_log_lock = threading.Lock()
_ready: set = set()  # (kernel, argument kinds) already compiled


def _kind(arg):
    """What numba's type of ``arg`` depends on, found in ~1 us (``numba.typeof`` takes ~50 us,
    most of a small decode step's budget)."""
    if isinstance(arg, np.ndarray):
        flags = arg.flags
        return arg.dtype, arg.ndim, flags.c_contiguous, flags.f_contiguous, flags.writeable, flags.aligned
    return type(arg)


def compile_kernel(kernel, *args) -> float:
    """Compile ``kernel`` (a numba dispatcher) for the types of ``args`` without running it.

    Returns the seconds it took, 0.0 when it was already compiled in this process.
    """
    key = (kernel, *map(_kind, args))
    if key in _ready:
        return 0.0
    signature = tuple(numba.typeof(arg) for arg in args)
    seconds = 0.0
    if signature not in kernel.overloads:
        start = time.perf_counter()
        kernel.compile(signature)
        seconds = time.perf_counter() - start
        with _log_lock:
            _log.append((kernel.py_func.__qualname__, str(signature), seconds))
    _ready.add(key)
    return seconds


def compile_log() -> pd.DataFrame:
    """Every kernel compiled or loaded from numba's cache in this process: kernel, signature, seconds."""
    with _log_lock:
        return pd.DataFrame(_log, columns=["kernel", "signature", "seconds"])


def check_threads(threads: int | None) -> int:
    """``threads`` checked against numba's thread pool; ``None`` means all of it."""
    limit = numba.config.NUMBA_NUM_THREADS
    if threads is None:
        return limit
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= limit:
        raise ValueError(f"threads must be an integer from 1 to {limit} (numba's thread pool here), got {threads!r}")
    return threads


@contextlib.contextmanager
def numba_threads(threads: int):
    """numba's parallel loops entered by this thread inside the block use ``threads`` threads.

    Cached kernels must not call ``numba.get_num_threads()`` (the value would be frozen
    into the cache), so wrappers set it here and pass the same count in as an argument.
    """
    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        yield threads
    finally:
        numba.set_num_threads(before)


@functools.lru_cache(maxsize=1)
def _blas_libraries():
    import scipy.linalg.cython_blas  # noqa: F401  the BLAS numba's np.dot calls: loaded before looking
    from threadpoolctl import ThreadpoolController

    # finding the libraries reads every loaded one (~3 ms): done once
    return ThreadpoolController()


def one_blas_thread():
    """A context in which BLAS runs on one thread, for kernels whose numba threads each
    make their own small BLAS calls (BLAS threads on top would oversubscribe the cores).
    BLAS's thread count is process-wide: other threads' BLAS calls meanwhile are single-threaded too."""
    return _blas_libraries().limit(limits=1, user_api="blas")
