"""Compute kernels (k-means, Hogwild SGD, attention) on numba, numba.cuda, CuPy and numpy.

``resolve_backend("auto")`` names the fastest backend usable here; asking for one
that cannot run raises ``BackendUnavailable`` saying why (no CUDA driver, CuPy not
installed or without a GPU ...). First-call compile time is kept apart from run
time: ``compile_log()`` lists every kernel compiled in this process. Pure core.
"""
from ._attention import attention, attention_decode, attention_tiles
from ._backends import BACKENDS, BackendUnavailable, available_backends, resolve_backend
from ._hogwild import SGDResult, hogwild_sgd, sparse_classification
from ._jit import compile_log
from ._kmeans import KMeansResult, kmeans, kmeans_plusplus
from ._peak import matmul_peak_gflops

__all__ = [
    "BACKENDS",
    "BackendUnavailable",
    "KMeansResult",
    "SGDResult",
    "attention",
    "attention_decode",
    "attention_tiles",
    "available_backends",
    "compile_log",
    "hogwild_sgd",
    "kmeans",
    "kmeans_plusplus",
    "matmul_peak_gflops",
    "resolve_backend",
    "sparse_classification",
]
