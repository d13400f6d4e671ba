"""Compute kernels (k-means, Hogwild SGD, attention) on numba, numba.cuda, CuPy and numpy.

So far: backend selection. ``resolve_backend("auto")`` names the fastest backend
usable here; asking for one that cannot run raises ``BackendUnavailable`` saying
why (no CUDA driver, CuPy not installed or without a GPU ...). Pure core.
"""
from ._backends import BACKENDS, BackendUnavailable, available_backends, resolve_backend

__all__ = ["BACKENDS", "BackendUnavailable", "available_backends", "resolve_backend"]
