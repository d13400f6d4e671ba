"""numba CPU kernels of attention: BLAS for the two matmuls of a tile, a vectorised exp for its softmax.

Measured for B=1, H=8, L=2048, D=64 float32 on this machine's 2 cores: the two
matmuls are 8.6 GFLOP, which OpenBLAS's sgemm (``np.dot`` with ``out``, one BLAS
thread per numba thread) runs at 80-94 GFLOP/s per core on 512 x 512 tiles. The
rest is the softmax: numba has no SVML here, so ``np.exp`` in a loop is a library
call per value, 2.5x slower than numpy's; ``exp2_nonpositive`` (range reduction,
polynomial, exponent bits) vectorises and does the 33.5M values in 11 ms on one
thread, faster than numpy's. numpy tiles (matmul, max, subtract, exp, sum, matmul)
on a pool of 2 Python threads measured 1.2-1.45x torch's SDPA; this kernel 0.93-0.98x.
Scores are kept in base 2 (q pre-scaled by ``scale * log2(e)``), so the softmax
needs ``2**x`` only.
"""
import math

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

LOG2E = 1.4426950408889634
# Taylor coefficients of 2**f = e**(f ln 2) for |f| <= 1/2: the first omitted term is
# below float32's (degree 7) and float64's (degree 13) rounding.
_EXP2_F32 = tuple(np.float32(math.log(2) ** i / math.factorial(i)) for i in range(7, -1, -1))
_EXP2_F64 = tuple(math.log(2) ** i / math.factorial(i) for i in range(13, -1, -1))
# fastmath without "nnan"/"ninf": with them the compiler may assume q, k and v finite and a
# NaN or inf comes out as anything (it came out as a zero softmax sum); without them it comes
# out as NaN where torch's SDPA gives NaN. error_model="numpy": a division by zero is IEEE, not
# an exception (which a parallel kernel can only report as a SystemError).
_FAST_WITH_NAN = {"nsz", "arcp", "contract", "reassoc", "afn"}


@intrinsic
def _float_from_bits(typingctx, bits):
    """The float whose IEEE bits are ``bits`` (int32 -> float32, int64 -> float64)."""
    result = types.float32 if bits == types.int32 else types.float64

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType() if result == types.float32 else ir.DoubleType())

    return result(bits), codegen


def exp2_nonpositive(x):
    """2**x for x <= 0 (0 for x below the normal range), without a library call, so loops vectorise."""
    raise NotImplementedError  # typed and compiled through the overload below


@overload(exp2_nonpositive, jit_options={"fastmath": _FAST_WITH_NAN})
def _exp2_nonpositive(x):
    if x == types.float32:
        coefficients, real, whole, bias, shift = _EXP2_F32, np.float32, np.int32, 127, 23
    else:
        coefficients, real, whole, bias, shift = _EXP2_F64, np.float64, np.int64, 1023, 52
    low, half = real(1 - bias), real(0.5)

    def impl(x):
        x = max(x, low)  # 2**low is the smallest normal number; anything smaller counts as ~0; NaN stays NaN
        n = whole(x - half)  # nearest integer (x <= 0, truncation rounds up)
        f = x - real(n)  # in [-1/2, 1/2]
        p = coefficients[0]
        for c in coefficients[1:]:
            p = p * f + c
        return p * _float_from_bits(whole((n + bias) << shift))

    return impl


@numba.njit(fastmath=_FAST_WITH_NAN, inline="always")
def _largest(row, count):
    top = row[0]
    for j in range(1, count):
        top = max(top, row[j])
    return top


@numba.njit(fastmath=_FAST_WITH_NAN, inline="always")
def _exponentiate(row, count, top):
    """``row[j] = 2^(row[j] - top)`` for the first ``count`` values (scores already in
    base 2); their sum."""
    total = row.dtype.type(0)
    for j in range(count):
        p = exp2_nonpositive(row[j] - top)
        row[j] = p
        total += p
    return total


@numba.njit(fastmath=_FAST_WITH_NAN, error_model="numpy", cache=True)
def _attend_query_tile(q, k, v, out, start, stop, score_scale, causal, k_tile,
                       scores, partial, acc, q_block, row_max, row_sum, rescale):
    """out[start:stop] for one head: q (Lq, D), k and v (Lk, D), out (Lq, D).
    Scratch: scores (>= rows * k_tile,), partial, acc, q_block (>= rows, D),
    row_max, row_sum, rescale (>= rows,)."""
    rows, dim = stop - start, q.shape[1]
    # causal is top-left aligned (row i sees keys j <= i): key tiles from `stop` on are all masked
    key_stop = min(k.shape[0], stop) if causal else k.shape[0]
    scaled_q = q_block[:rows]
    for i in range(rows):
        for d in range(dim):
            scaled_q[i, d] = q[start + i, d] * score_scale
    tile_out = partial[:rows]
    for j0 in range(0, key_stop, k_tile):
        cols = min(k_tile, key_stop - j0)
        tile = scores[:rows * cols].reshape((rows, cols))
        np.dot(scaled_q, k[j0:j0 + cols].T, tile)
        for i in range(rows):
            row = tile[i]
            visible = min(cols, start + i + 1 - j0) if causal else cols
            if visible <= 0:  # every key of this tile is after row i (causal only; never the first tile)
                row[:] = 0.0
                rescale[i] = 1.0
                continue
            new_max = _largest(row, visible)
            if j0 > 0:
                new_max = max(new_max, row_max[i])
            total = _exponentiate(row, visible, new_max)
            row[visible:] = 0.0
            if j0 == 0:
                row_sum[i] = total
            else:
                rescale[i] = exp2_nonpositive(row_max[i] - new_max)
                row_sum[i] = row_sum[i] * rescale[i] + total
            row_max[i] = new_max
        np.dot(tile, v[j0:j0 + cols], tile_out)
        if j0 == 0:
            acc[:rows] = tile_out
        else:
            for i in range(rows):
                r = rescale[i]
                for d in range(dim):
                    acc[i, d] = acc[i, d] * r + tile_out[i, d]
    for i in range(rows):
        inverse = 1.0 / row_sum[i]
        for d in range(dim):
            out[start + i, d] = acc[i, d] * inverse


@numba.njit(parallel=True, fastmath=_FAST_WITH_NAN, error_model="numpy", cache=True)
def flash_attention(q, k, v, out, score_scale, causal, q_tile, k_tile, task_order, n_threads,
                    scores, partial, acc, q_block, row_max, row_sum, rescale):
    """out = softmax(q k^T scale) v with scores in base 2 (``score_scale = scale * log2(e)``).

    q, out (B, H, Lq, D); k, v (B, Hkv, Lk, D), query head h reading kv head
    h // (H // Hkv). A task is (b, h, query tile), numbered (b * H + h) * tiles + tile;
    thread t runs task_order[t::n_threads]. Scratch, one slice per thread: scores
    (n_threads, q_tile * k_tile); partial, acc, q_block (n_threads, q_tile, D);
    row_max, row_sum, rescale (n_threads, q_tile).
    """
    heads, lq = q.shape[1], q.shape[2]
    group = heads // k.shape[1]
    q_tiles = (lq + q_tile - 1) // q_tile
    for t in numba.prange(n_threads):
        for position in range(t, task_order.size, n_threads):
            task = task_order[position]
            b, h = divmod(task // q_tiles, heads)
            start = (task % q_tiles) * q_tile
            _attend_query_tile(q[b, h], k[b, h // group], v[b, h // group], out[b, h], start,
                               min(start + q_tile, lq), score_scale, causal, k_tile, scores[t], partial[t],
                               acc[t], q_block[t], row_max[t], row_sum[t], rescale[t])


@numba.njit(parallel=True, fastmath=_FAST_WITH_NAN, error_model="numpy", cache=True)
def decode_attention(q, k_cache, v_cache, lengths, out, score_scale, n_threads, scores):
    """One query per (b, h) against the first lengths[b] cache positions, base-2 scores.

    q, out (B, H, D); caches (B, Hkv, Lmax, D). A task is (b, kv head), its query
    heads together, so the cache rows stay in cache between them; thread t runs
    tasks t, t + n_threads, ... Scratch: scores (n_threads, H // Hkv, Lmax).
    """
    heads, dim = q.shape[1], q.shape[2]
    kv_heads = k_cache.shape[1]
    group = heads // kv_heads
    for t in numba.prange(n_threads):
        for task in range(t, q.shape[0] * kv_heads, n_threads):
            b, kv_head = divmod(task, kv_heads)
            length = lengths[b]
            keys, values = k_cache[b, kv_head], v_cache[b, kv_head]
            for g in range(group):
                query, weights, result = q[b, kv_head * group + g], scores[t, g], out[b, kv_head * group + g]
                for j in range(length):
                    dot = query[0] * keys[j, 0]
                    for d in range(1, dim):
                        dot += query[d] * keys[j, d]
                    weights[j] = dot * score_scale
                total = _exponentiate(weights, length, _largest(weights, length))
                result[:] = 0.0
                for j in range(length):
                    p = weights[j]
                    for d in range(dim):
                        result[d] += p * values[j, d]
                inverse = 1.0 / total
                for d in range(dim):
                    result[d] *= inverse
