"""Compile numba kernels before timing them, and choose how many threads their loops use.

Compile time is kept apart from run time everywhere: a public function compiles
(or loads from numba's on-disk cache) each kernel it needs through ``compile_kernel``
before it starts its clock, and the seconds that took go into ``compile_log()``.
"""
from __future__ import annotations

import contextlib
import threading
import time

import numba
import pandas as pd

_log: list[tuple[str, str, float]] = []
_log_lock = threading.Lock()


def compile_kernel(kernel, *args) -> float:
    """Compile ``kernel`` (a numba dispatcher) for the types of ``args`` without running it.

    Returns the seconds it took, 0.0 when it was already compiled in this process.
    """
    signature = tuple(numba.typeof(arg) for arg in args)
    if signature in kernel.overloads:
        return 0.0
    start = time.perf_counter()
    kernel.compile(signature)
    seconds = time.perf_counter() - start
    with _log_lock:
        _log.append((kernel.py_func.__qualname__, str(signature), seconds))
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
