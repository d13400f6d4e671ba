"""Hogwild SGD kernels for the CPU: the per-shard update, its parallel driver, and the margins pass.

Kernels check nothing: ``_hogwild.hogwild_sgd`` checks and allocates. ``_sgd_shard`` works on
any weight buffer (a numpy array over ``multiprocessing.shared_memory`` too), so a
process-level variant can call it unchanged.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

# fastmath without "reassoc": a reassociated dot product vectorises into AVX-512 gathers,
# twice as slow on random rows here, and a fixed summation order keeps runs reproducible.
FASTMATH = {"nnan", "ninf", "nsz", "arcp", "contract", "afn"}
# Rows are visited in shuffled order, so each one is a cache (and TLB) miss: fetch its
# indices and values this many rows ahead, and its indptr entry twice as far ahead.
ROWS_AHEAD = 8
INDPTR_AHEAD = 16
_LINE = 8  # array items between two prefetches: 64 bytes of float64, more than enough for int32


def _item_pointer(context, builder, array_type, array, index):
    ary = context.make_array(array_type)(context, builder, array)
    return cgutils.get_item_pointer(context, builder, array_type, ary, [index])


@intrinsic
def _prefetch(typingctx, array, index):
    """Start loading the cache line holding ``array[index]`` (LLVM's prefetch: read, keep)."""
    def codegen(context, builder, signature, args):
        pointer = _item_pointer(context, builder, signature.args[0], *args)
        i8_pointer, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        prefetch = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8_pointer, i32, i32, i32]), "llvm.prefetch.p0")
        builder.call(prefetch, [builder.bitcast(pointer, i8_pointer), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()
    return types.void(array, index), codegen


@intrinsic
def _try_lock(typingctx, lock):
    """Take the spin lock ``lock[0]`` (0 free, 1 held) if free: an acquire compare-and-swap. True if taken."""
    def codegen(context, builder, signature, args):
        pointer = _item_pointer(context, builder, signature.args[0], args[0], context.get_constant(types.intp, 0))
        swapped = builder.cmpxchg(pointer, ir.Constant(ir.IntType(64), 0), ir.Constant(ir.IntType(64), 1),
                                  "acquire", "monotonic")
        return builder.extract_value(swapped, 1)
    return types.boolean(lock), codegen


@intrinsic
def _lock_held(typingctx, lock):
    """``lock[0] != 0``, read atomically, so a waiting thread spins on its own cached copy."""
    def codegen(context, builder, signature, args):
        pointer = _item_pointer(context, builder, signature.args[0], args[0], context.get_constant(types.intp, 0))
        value = builder.load_atomic(pointer, "monotonic", 8)
        return builder.icmp_unsigned("!=", value, ir.Constant(ir.IntType(64), 0))
    return types.boolean(lock), codegen


@intrinsic
def _unlock(typingctx, lock):
    """Free the spin lock ``lock[0]``: a release store, so the guarded writes are seen first."""
    def codegen(context, builder, signature, args):
        pointer = _item_pointer(context, builder, signature.args[0], args[0], context.get_constant(types.intp, 0))
        builder.store_atomic(ir.Constant(ir.IntType(64), 0), pointer, "release", 8)
        return context.get_dummy_value()
    return types.void(lock), codegen


@njit(inline="always", fastmath=FASTMATH)
def _loss_gradient(margin, label, hinge):
    """d loss / d margin for a label in {-1, +1}: hinge max(0, 1 - y m), or log(1 + exp(-y m))."""
    z = label * margin
    if hinge:
        return -label if z < 1.0 else 0.0
    if z > 0.0:  # the two branches keep exp from overflowing
        e = np.exp(-z)
        return -label * e / (1.0 + e)
    return -label / (1.0 + np.exp(z))


@njit(nogil=True, fastmath=FASTMATH, cache=True)
def _sgd_shard(indptr, indices, data, y, rows, w, lr, hinge, locked, lock):
    """One SGD step per row of ``rows``, in that order, on ``w`` in place: read the touched
    weights, take the gradient of one example's loss, write back only the touched weights.

    Racy by design when several workers share ``w`` (Hogwild!). With ``locked`` each step runs
    under the spin lock ``lock[0]`` (an int64 array shared by the workers).
    """
    n_rows = rows.shape[0]
    for i in range(n_rows):
        if i + INDPTR_AHEAD < n_rows:
            _prefetch(indptr, rows[i + INDPTR_AHEAD])
        if i + ROWS_AHEAD < n_rows:
            ahead = rows[i + ROWS_AHEAD]
            for k in range(indptr[ahead], indptr[ahead + 1], _LINE):
                _prefetch(indices, k)
                _prefetch(data, k)
            _prefetch(y, ahead)
        row = rows[i]
        start, end = indptr[row], indptr[row + 1]
        if locked:
            while not _try_lock(lock):
                while _lock_held(lock):
                    pass
        margin = 0.0
        for k in range(start, end):
            margin += w[indices[k]] * data[k]
        step = -lr * _loss_gradient(margin, y[row], hinge)
        if step != 0.0:
            for k in range(start, end):
                w[indices[k]] += step * data[k]
        if locked:
            _unlock(lock)


@njit(parallel=True, nogil=True, fastmath=FASTMATH, cache=True)
def _sgd_epoch(indptr, indices, data, y, order, bounds, w, lr, hinge, locked, lock):
    """One worker per shard ``order[bounds[t]:bounds[t + 1]]``, all updating ``w`` at once.

    The caller sets numba's thread count to ``len(bounds) - 1`` so each thread gets one shard.
    """
    for t in prange(bounds.shape[0] - 1):
        _sgd_shard(indptr, indices, data, y, order[bounds[t]:bounds[t + 1]], w, lr, hinge, locked, lock)


@njit(parallel=True, nogil=True, fastmath=FASTMATH, cache=True)
def _margins(indptr, indices, data, w, out):
    """``out[i] = x_i . w`` for every row of the CSR matrix."""
    for i in prange(out.shape[0]):
        margin = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            margin += w[indices[k]] * data[k]
        out[i] = margin


@njit(parallel=True, nogil=True, fastmath=FASTMATH, cache=True)
def _loss_and_accuracy(indptr, indices, data, w, y, hinge):
    """The mean loss and the accuracy of ``w`` on every row (labels ``y`` in {-1, +1}), in one
    pass over X: no array of margins to write and read back."""
    n = y.shape[0]
    total = 0.0
    correct = 0
    for i in prange(n):
        margin = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            margin += w[indices[k]] * data[k]
        z = y[i] * margin
        if hinge:
            total += max(0.0, 1.0 - z)
        else:
            total += max(-z, 0.0) + np.log1p(np.exp(-abs(z)))  # log(1 + exp(-z)), overflow-free
        if (margin > 0.0) == (y[i] > 0.0):
            correct += 1
    return total / n, correct / n
