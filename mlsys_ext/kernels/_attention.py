"""``attention`` and ``attention_decode``: flash-style scaled dot-product attention on
numba, numba.cuda, CuPy or numpy.

Every backend tiles queries and keys and keeps an online softmax per query row
(running max and sum; the accumulator is rescaled when the max grows), so no
backend holds more than a tile of scores per (batch, head): memory is O(L x tile),
never L x L. The public functions check and allocate; the kernels check nothing.

``causal`` is top-left aligned, as in torch's ``scaled_dot_product_attention``:
query i sees keys j <= i whatever Lq and Lk are (for Lq > Lk the rows from Lk - 1
on see every key; for Lq < Lk the last keys are seen by none). Key tiles that no
query of a tile can see are skipped.
"""
from __future__ import annotations

import math
import os
import time
from numbers import Real

import numpy as np

from .._environment import machine_key
from .._wisdom import remembered
from ._backends import resolve_backend
from ._jit import check_threads, compile_kernel, numba_threads, one_blas_thread

# numba CPU tiles (query rows x keys), tried on first use on this machine for each dtype, D
# and causality; the fastest is remembered (``_wisdom``), so no tile shape tuned on one CPU
# is imposed on another. 512 x 512 was fastest on the Zen 4/5 the kernel was tuned on (1 MiB
# of L2); on a Zen 3 (512 KiB) these four full-attention candidates came within noise of each
# other (B=1, H=8, L=2048, D=64: 73-79 ms at best). Causal tiles have fewer rows: the key
# range stops at a tile's last row, so smaller tiles compute fewer masked scores.
TILE_CANDIDATES = {False: ((256, 256), (256, 512), (512, 256), (512, 512)),
                   True: ((128, 256), (128, 512), (256, 256), (256, 512))}
TILE_PROBLEM_HEADS_PER_THREAD, TILE_PROBLEM_LENGTH = 2, 1024  # the measurement: ~15 ms a call, 0.15 s in all
TILES_ENVIRONMENT = "MLSYS_ATTENTION_TILES"  # "512x256" forces those tiles
# array-module tiles: whole (B, H) batches per matmul, so fewer, larger calls
XP_Q_TILE, XP_K_TILE = 256, 512


def attention(q, k, v, causal: bool = False, scale: float | None = None, backend: str = "auto",
              threads: int | None = None) -> np.ndarray:
    """softmax(q k^T scale + mask) v for q (B, H, Lq, D), k and v (B, Hkv, Lk, D).

    H must be a multiple of Hkv (grouped-query attention: query head h reads kv head
    h // (H // Hkv)). float32 or float64, one dtype for all three; the result has q's
    shape and dtype. ``scale`` defaults to 1/sqrt(D); ``causal`` masks keys after the
    query (top-left aligned, as torch's SDPA). ``threads``: numba's threads (default
    all). The numba backend runs both matmuls of a tile through BLAS (``np.dot``, one
    BLAS thread per numba thread: BLAS's thread count is process-wide, so other
    threads' BLAS calls are single-threaded meanwhile) and the softmax in numba.
    """
    q, k, v = _check_inputs(q, k, v)
    if not isinstance(causal, (bool, np.bool_)):
        raise TypeError(f"causal must be True or False, got {causal!r}")
    scale = _check_scale(scale, q.shape[-1])
    threads = check_threads(threads)
    return _ATTENTION[resolve_backend(backend)](q, k, v, bool(causal), scale, threads)


def attention_decode(q, k_cache, v_cache, lengths, scale: float | None = None, backend: str = "auto",
                     threads: int | None = None) -> np.ndarray:
    """Attention of one new token per sequence: q (B, H, D) against caches (B, Hkv, Lmax, D),
    sequence b seeing its first ``lengths[b]`` positions (1 <= lengths[b] <= Lmax).
    Returns (B, H, D) in q's dtype; the arguments mean what they mean in ``attention``."""
    q, k_cache, v_cache = _check_inputs(q, k_cache, v_cache, ("q", "k_cache", "v_cache"),
                                        "(B, H, D)", "(B, Hkv, Lmax, D)")
    lengths = np.asarray(lengths)
    if lengths.shape != (q.shape[0],) or lengths.dtype.kind not in "iu":
        raise ValueError(f"lengths must be {q.shape[0]} integers (one per sequence), "
                         f"got shape {lengths.shape} of {lengths.dtype}")
    max_length = k_cache.shape[2]
    if lengths.min() < 1 or lengths.max() > max_length:
        raise ValueError(f"lengths must lie in 1 ... {max_length} (the cache length), "
                         f"got {lengths.min()} ... {lengths.max()}")
    scale = _check_scale(scale, q.shape[-1])
    threads = check_threads(threads)
    return _DECODE[resolve_backend(backend)](q, k_cache, v_cache, lengths.astype(np.int64), scale, threads)


# ---- checks -----------------------------------------------------------------------------------

def _check_array(name: str, array, ndim: int, layout: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D {layout}, got shape {array.shape}")
    if 0 in array.shape:
        raise ValueError(f"{name} must not be empty, got shape {array.shape}")
    if array.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be float32 or float64, got {array.dtype}")
    return np.ascontiguousarray(array)


def _check_dtypes(**arrays) -> None:
    if len({a.dtype for a in arrays.values()}) > 1:
        listed = ", ".join(f"{name} {a.dtype}" for name, a in arrays.items())
        raise TypeError(f"{', '.join(arrays)} must share one dtype, got {listed}")


def _check_heads(batch: int, heads: int, dim: int, kv_shape: tuple, kv_name: str) -> None:
    if kv_shape[0] != batch:
        raise ValueError(f"q and {kv_name} must have the same batch size B, got {batch} and {kv_shape[0]}")
    if kv_shape[-1] != dim:
        raise ValueError(f"q and {kv_name} must have the same head dim D, got {dim} and {kv_shape[-1]}")
    if heads % kv_shape[1]:
        raise ValueError(f"q's {heads} heads must be a multiple of {kv_name}'s {kv_shape[1]} kv heads")


def _check_inputs(q, k, v, names=("q", "k", "v"), q_layout="(B, H, Lq, D)", kv_layout="(B, Hkv, Lk, D)"):
    q = _check_array(names[0], q, q_layout.count(",") + 1, q_layout)
    k = _check_array(names[1], k, 4, kv_layout)
    v = _check_array(names[2], v, 4, kv_layout)
    _check_dtypes(**dict(zip(names, (q, k, v))))
    if k.shape != v.shape:
        raise ValueError(f"{names[1]} and {names[2]} must have the same shape {kv_layout}, "
                         f"got {k.shape} and {v.shape}")
    _check_heads(q.shape[0], q.shape[1], q.shape[-1], k.shape, names[1])
    return q, k, v


def _check_scale(scale, dim: int) -> float:
    if scale is None:
        return 1.0 / math.sqrt(dim)
    if isinstance(scale, bool) or not isinstance(scale, Real) or not math.isfinite(scale):
        raise ValueError(f"scale must be a finite number, got {scale!r}")
    return float(scale)


# ---- numba (CPU) ------------------------------------------------------------------------------

def _numba_attention(q, k, v, causal, scale, threads):
    return _flash_numba(q, k, v, causal, scale, threads, *attention_tiles(q.dtype, q.shape[-1], causal, threads))


def attention_tiles(dtype, dim: int, causal: bool, threads: int) -> tuple[int, int]:
    """(query rows, keys) of the numba kernel's tiles: MLSYS_ATTENTION_TILES when set, else
    the fastest of TILE_CANDIDATES on this machine, measured once and remembered."""
    forced = os.environ.get(TILES_ENVIRONMENT)
    if forced is not None:
        rows, sep, keys = forced.partition("x")
        if not (sep and rows.isdigit() and keys.isdigit() and int(rows) > 0 and int(keys) > 0):
            raise ValueError(f"{TILES_ENVIRONMENT} must be <query rows>x<keys>, such as 512x256, got {forced!r}")
        return int(rows), int(keys)
    dtype = np.dtype(dtype)
    name = f"{machine_key()} / {threads} threads / {dtype.name} D={dim} {'causal' if causal else 'full'}"
    entry = remembered("attention", name, lambda: _fastest_tiles(dtype, dim, causal, threads), _valid_tiles)
    return entry["q_tile"], entry["k_tile"]


def _fastest_tiles(dtype, dim: int, causal: bool, threads: int) -> dict:
    """Time each candidate (best of two, after a call that compiles or warms) on B=1 and
    TILE_PROBLEM_HEADS_PER_THREAD heads a thread of TILE_PROBLEM_LENGTH tokens."""
    rng = np.random.default_rng(0)
    shape = (1, TILE_PROBLEM_HEADS_PER_THREAD * threads, TILE_PROBLEM_LENGTH, dim)
    q, k, v = (rng.standard_normal(shape).astype(dtype) for _ in range(3))
    seconds = {}
    for q_tile, k_tile in TILE_CANDIDATES[causal]:
        _flash_numba(q, k, v, causal, 1.0 / math.sqrt(dim), threads, q_tile, k_tile)
        times = []
        for _ in range(2):
            start = time.perf_counter()
            _flash_numba(q, k, v, causal, 1.0 / math.sqrt(dim), threads, q_tile, k_tile)
            times.append(time.perf_counter() - start)
        seconds[q_tile, k_tile] = min(times)
    q_tile, k_tile = min(seconds, key=seconds.get)
    return {"q_tile": q_tile, "k_tile": k_tile}


def _valid_tiles(entry: dict) -> bool:
    return all(isinstance(entry.get(name), int) and not isinstance(entry[name], bool) and entry[name] > 0
               for name in ("q_tile", "k_tile"))


def _flash_numba(q, k, v, causal, scale, threads, q_tile, k_tile):
    from . import _attention_numba as kernels

    batch, heads, lq, dim = q.shape
    lk = k.shape[2]
    k_tile = min(k_tile, lk)
    q_tile = min(q_tile, lq)
    # smaller query tiles until every thread has at least two tasks
    while q_tile > 64 and batch * heads * -(-lq // q_tile) < 2 * threads:
        q_tile = -(-q_tile // 2)
    tiles = -(-lq // q_tile)
    if causal:  # costliest (most keys seen) first, dealt round-robin: the threads' loads come out even
        keys_seen = np.minimum(np.arange(1, tiles + 1) * q_tile, lk)
        order = np.argsort(-np.tile(keys_seen, batch * heads), kind="stable").astype(np.int64)
    else:
        order = np.arange(batch * heads * tiles, dtype=np.int64)
    out = np.empty_like(q)
    scratch = [np.empty((threads, *shape), dtype=q.dtype) for shape in
               [(q_tile * k_tile,)] + [(q_tile, dim)] * 3 + [(q_tile,)] * 3]
    args = (q, k, v, out, q.dtype.type(scale * kernels.LOG2E), causal, q_tile, k_tile, order, threads, *scratch)
    compile_kernel(kernels.flash_attention, *args)
    with one_blas_thread(), numba_threads(threads):
        kernels.flash_attention(*args)
    return out


def _numba_decode(q, k_cache, v_cache, lengths, scale, threads):
    from . import _attention_numba as kernels

    batch, heads, dim = q.shape
    kv_heads = k_cache.shape[1]
    threads = min(threads, batch * kv_heads)  # one task per (b, kv head): no more threads than tasks
    out = np.empty_like(q)
    scores = np.empty((threads, heads // kv_heads, k_cache.shape[2]), dtype=q.dtype)
    args = (q, k_cache, v_cache, lengths, out, q.dtype.type(scale * kernels.LOG2E), threads, scores)
    compile_kernel(kernels.decode_attention, *args)
    with numba_threads(threads):
        kernels.decode_attention(*args)
    return out


# ---- array modules (numpy, CuPy) --------------------------------------------------------------

def flash_xp(xp, q, k, v, scale, key_limit, q_tile, k_tile):
    """Tiled online-softmax attention written once over the array module ``xp``
    (numpy runs exactly what CuPy runs); q (B, H, Lq, D), k and v (B, Hkv, Lk, D) on xp,
    tiles of ``q_tile`` queries by ``k_tile`` keys.

    ``key_limit``: None (every query sees every key) or a host integer array
    broadcastable to (B, Hkv, H // Hkv, Lq): query row i of batch b sees keys
    j < key_limit[b, ..., i] (at least 1). With a size-1 row axis (decode's cache lengths)
    the keys past the limit are no part of the sequence, and their values are masked too:
    a stale NaN there times its weight of 0 would still be NaN. Per-row (causal) limits
    leave values alone, as torch does. Each step handles all (B, H) at once.
    """
    batch, heads, lq, dim = q.shape
    kv_heads, lk = k.shape[1], k.shape[2]
    grouped_q = (q * scale).reshape(batch, kv_heads, heads // kv_heads, lq, dim)
    keys, values = k[:, :, None], v[:, :, None]  # broadcast over each kv head's query heads
    per_sequence = key_limit is not None and key_limit.shape[-1] == 1
    if key_limit is not None:  # a size-1 row axis stands for every row
        key_limit = np.broadcast_to(key_limit, (*key_limit.shape[:-1], lq))
    limit = None if key_limit is None else xp.asarray(key_limit)
    out = xp.empty_like(grouped_q)
    for i0 in range(0, lq, q_tile):
        i1 = min(i0 + q_tile, lq)
        key_stop, seen_by_all = lk, lk
        if key_limit is not None:
            rows = key_limit[..., i0:i1]
            key_stop, seen_by_all = min(lk, int(rows.max())), int(rows.min())
        row_max = row_sum = acc = None
        for j0 in range(0, key_stop, k_tile):
            j1 = min(j0 + k_tile, key_stop)
            scores = grouped_q[..., i0:i1, :] @ xp.swapaxes(keys[..., j0:j1, :], -1, -2)
            tile_values = values[..., j0:j1, :]
            if j1 > seen_by_all:
                visible = xp.arange(j0, j1) < limit[..., i0:i1, None]
                scores = xp.where(visible, scores, -xp.inf)
                if per_sequence:  # every row's mask is the same: the first, as a column over the keys
                    tile_values = xp.where(xp.swapaxes(visible[..., :1, :], -1, -2), tile_values, 0)
            tile_max = scores.max(axis=-1, keepdims=True)  # finite: every row sees key 0 in the first tile
            new_max = tile_max if row_max is None else xp.maximum(row_max, tile_max)
            weights = xp.exp(scores - new_max)
            partial = weights @ tile_values
            if row_max is None:
                row_sum, acc = weights.sum(axis=-1, keepdims=True), partial
            else:
                rescale = xp.exp(row_max - new_max)
                row_sum = row_sum * rescale + weights.sum(axis=-1, keepdims=True)
                acc = acc * rescale + partial
            row_max = new_max
        out[..., i0:i1, :] = acc / row_sum
    return out.reshape(batch, heads, lq, dim)


def _causal_limit(lq: int) -> np.ndarray:
    return np.arange(1, lq + 1)


def _numpy_attention(q, k, v, causal, scale, threads):
    return flash_xp(np, q, k, v, scale, _causal_limit(q.shape[2]) if causal else None, XP_Q_TILE, XP_K_TILE)


def _numpy_decode(q, k_cache, v_cache, lengths, scale, threads):
    return flash_xp(np, q[:, :, None], k_cache, v_cache, scale, lengths[:, None, None, None],
                    XP_Q_TILE, XP_K_TILE)[:, :, 0]


def _cupy_attention(q, k, v, causal, scale, threads):
    import cupy

    out = flash_xp(cupy, cupy.asarray(q), cupy.asarray(k), cupy.asarray(v), scale,
                   _causal_limit(q.shape[2]) if causal else None, XP_Q_TILE, XP_K_TILE)
    return cupy.asnumpy(out)


def _cupy_decode(q, k_cache, v_cache, lengths, scale, threads):
    import cupy

    out = flash_xp(cupy, cupy.asarray(q)[:, :, None], cupy.asarray(k_cache), cupy.asarray(v_cache), scale,
                   lengths[:, None, None, None], XP_Q_TILE, XP_K_TILE)
    return cupy.asnumpy(out[:, :, 0])


# ---- numba.cuda -------------------------------------------------------------------------------

def _cuda_kernels(dim: int):
    from . import _attention_cuda as kernels

    if dim > kernels.MAX_DIM:
        raise ValueError(f"the numba-cuda kernels take head dims up to {kernels.MAX_DIM}, got D={dim}")
    return kernels


def _cuda_attention(q, k, v, causal, scale, threads):
    from numba import cuda

    kernels = _cuda_kernels(q.shape[3])
    batch, heads, lq, _ = q.shape
    out = cuda.device_array_like(q)
    blocks = batch * heads * -(-lq // kernels.Q_TILE)
    kernels.flash_attention_kernel[blocks, kernels.Q_TILE](
        cuda.to_device(q), cuda.to_device(k), cuda.to_device(v), out, scale, causal)
    return out.copy_to_host()


def _cuda_decode(q, k_cache, v_cache, lengths, scale, threads):
    from numba import cuda

    kernels = _cuda_kernels(q.shape[2])
    out = cuda.device_array_like(q)
    kernels.decode_attention_kernel[q.shape[0] * q.shape[1], kernels.DECODE_THREADS](
        cuda.to_device(q), cuda.to_device(k_cache), cuda.to_device(v_cache), cuda.to_device(lengths), out, scale)
    return out.copy_to_host()


_ATTENTION = {"numba": _numba_attention, "numpy": _numpy_attention, "cupy": _cupy_attention,
              "numba-cuda": _cuda_attention}
_DECODE = {"numba": _numba_decode, "numpy": _numpy_decode, "cupy": _cupy_decode, "numba-cuda": _cuda_decode}
