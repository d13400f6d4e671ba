"""Hogwild SGD on a GPU: every CUDA thread is a worker updating one weight vector racily.

``_hogwild`` imports this module, and so numba.cuda, only when a GPU backend runs. The
"numba-cuda" and "cupy" backends launch the same numba.cuda kernel and differ only in who
owns the device arrays: numba's ``cuda.to_device`` or CuPy's ``cupy.asarray``, which numba
reads through ``__cuda_array_interface__`` without a copy. So the CuPy path is the
numba-cuda path (tested under numba's CUDA simulator) with two other functions moving data.
"""
from __future__ import annotations

import math
import time
from typing import Callable, NamedTuple

import numpy as np
from numba import config, cuda

from ._jit import compile_kernel

BLOCK = 128  # threads per block


class Device(NamedTuple):
    """How a GPU backend moves arrays: host to device, device to host, and waits for the GPU."""
    to_device: Callable
    to_host: Callable
    synchronize: Callable


def numba_device() -> Device:
    return Device(cuda.to_device, lambda array: array.copy_to_host(), cuda.synchronize)


def cupy_device() -> Device:
    import cupy

    # numba launches on the legacy default stream, which CuPy's default stream also is
    return Device(cupy.asarray, cupy.asnumpy, cuda.synchronize)


@cuda.jit(fastmath=True, cache=True)
def sgd_epoch(indptr, indices, data, y, order, w, lr, hinge, workers):
    """Worker ``t`` of ``workers`` takes rows ``order[t], order[t + workers], ...`` (adjacent
    threads read adjacent entries of ``order``) and updates ``w`` with no lock or atomic."""
    worker = cuda.grid(1)
    if worker >= workers:
        return
    for i in range(worker, order.shape[0], workers):
        row = order[i]
        start, end = indptr[row], indptr[row + 1]
        margin = 0.0
        for k in range(start, end):
            margin += w[indices[k]] * data[k]
        label = y[row]
        z = label * margin
        if hinge:
            gradient = -label if z < 1.0 else 0.0
        elif z > 0.0:
            e = math.exp(-z)
            gradient = -label * e / (1.0 + e)
        else:
            gradient = -label / (1.0 + math.exp(z))
        step = -lr * gradient
        if step != 0.0:
            for k in range(start, end):
                w[indices[k]] += step * data[k]


def train_on_device(device: Device, indptr, indices, data, y, orders, w, lr, hinge, workers, score) -> float:
    """One kernel launch per epoch (``orders[e]``), X, y and w copied to the device once; after
    each epoch ``score(host copy of w, kernel seconds)``, and at the end w holds the result.
    Returns the JIT seconds."""
    arrays = [device.to_device(a) for a in (indptr, indices, data, y)]
    w_device = device.to_device(w)
    lr = w.dtype.type(lr)
    compile_seconds = 0.0
    blocks = (workers + BLOCK - 1) // BLOCK
    for order in orders:
        args = (*arrays, device.to_device(order), w_device, lr, hinge, np.int64(workers))
        if not config.ENABLE_CUDASIM:  # the simulator runs the Python function: nothing to compile
            compile_seconds += compile_kernel(sgd_epoch, *args)
        device.synchronize()
        start = time.perf_counter()
        sgd_epoch[blocks, min(workers, BLOCK)](*args)
        device.synchronize()
        seconds = time.perf_counter() - start
        w[:] = device.to_host(w_device)
        score(w, seconds)
    return compile_seconds
