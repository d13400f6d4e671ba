"""numba.cuda kernels of attention: flash-style, shared-memory tiles of K and V, online softmax.

One thread block per (b, h, tile of Q_TILE queries), one thread per query row: the
block stages K_TILE keys and values in shared memory, each thread scores its row
against them and folds them into its running max, sum and accumulator. Values are
staged and accumulated in float64 whatever the input dtype (shared and local arrays
need one compile-time dtype), so both dtypes share one kernel. Only ever run here
under numba's CUDA simulator: this machine has no GPU.
"""
import math

from numba import cuda, float64

Q_TILE = 32  # threads per block, one per query row
K_TILE = 16  # keys staged per step: 2 x 16 x MAX_DIM float64 = 32 KiB of shared memory
MAX_DIM = 128
DECODE_THREADS = 32  # threads per (b, h) in decode, each taking every 32nd cache position


@cuda.jit(cache=True)
def flash_attention_kernel(q, k, v, out, scale, causal):
    """out = softmax(q k^T scale + causal mask) v; q, out (B, H, Lq, D), k, v (B, Hkv, Lk, D).
    Launch with B * H * ceil(Lq / Q_TILE) blocks of Q_TILE threads."""
    keys = cuda.shared.array((K_TILE, MAX_DIM), float64)
    values = cuda.shared.array((K_TILE, MAX_DIM), float64)
    query = cuda.local.array(MAX_DIM, float64)
    acc = cuda.local.array(MAX_DIM, float64)
    scores = cuda.local.array(K_TILE, float64)
    heads, lq, dim = q.shape[1], q.shape[2], q.shape[3]
    lk = k.shape[2]
    q_tiles = (lq + Q_TILE - 1) // Q_TILE
    bh = cuda.blockIdx.x // q_tiles
    b, h = bh // heads, bh % heads
    kv_head = h // (heads // k.shape[1])
    start = (cuda.blockIdx.x % q_tiles) * Q_TILE
    row = start + cuda.threadIdx.x
    active = row < lq
    if active:
        for d in range(dim):
            query[d] = q[b, h, row, d] * scale
            acc[d] = 0.0
    row_max = -math.inf
    row_sum = 0.0
    # causal (top-left aligned): keys from the block's last row + 1 on are masked for all its rows
    key_stop = min(lk, min(lq, start + Q_TILE)) if causal else lk
    for j0 in range(0, key_stop, K_TILE):
        cols = min(K_TILE, key_stop - j0)
        for e in range(cuda.threadIdx.x, cols * dim, cuda.blockDim.x):
            keys[e // dim, e % dim] = k[b, kv_head, j0 + e // dim, e % dim]
            values[e // dim, e % dim] = v[b, kv_head, j0 + e // dim, e % dim]
        cuda.syncthreads()
        visible = min(cols, row + 1 - j0) if causal else cols
        if active and visible > 0:
            tile_max = -math.inf
            for j in range(visible):
                s = 0.0
                for d in range(dim):
                    s += query[d] * keys[j, d]
                scores[j] = s
                tile_max = max(tile_max, s)
            new_max = max(row_max, tile_max)
            rescale = math.exp(row_max - new_max)  # 0 on the first tile (row_max = -inf)
            row_sum *= rescale
            for d in range(dim):
                acc[d] *= rescale
            for j in range(visible):
                p = math.exp(scores[j] - new_max)
                row_sum += p
                for d in range(dim):
                    acc[d] += p * values[j, d]
            row_max = new_max
        cuda.syncthreads()  # the next tile overwrites keys and values
    if active:
        for d in range(dim):
            out[b, h, row, d] = acc[d] / row_sum


@cuda.jit(cache=True)
def decode_attention_kernel(q, k_cache, v_cache, lengths, out, scale):
    """One query per (b, h) against the first lengths[b] cache positions; q, out (B, H, D),
    caches (B, Hkv, Lmax, D). Launch with B * H blocks of DECODE_THREADS threads: each
    thread keeps an online softmax over its positions, then the block merges them."""
    maxima = cuda.shared.array(DECODE_THREADS, float64)
    sums = cuda.shared.array(DECODE_THREADS, float64)
    partials = cuda.shared.array((DECODE_THREADS, MAX_DIM), float64)
    query = cuda.local.array(MAX_DIM, float64)
    heads, dim = q.shape[1], q.shape[2]
    b, h = cuda.blockIdx.x // heads, cuda.blockIdx.x % heads
    kv_head = h // (heads // k_cache.shape[1])
    t = cuda.threadIdx.x
    for d in range(dim):
        query[d] = q[b, h, d] * scale
        partials[t, d] = 0.0
    row_max = -math.inf
    row_sum = 0.0
    for j in range(t, lengths[b], DECODE_THREADS):
        s = 0.0
        for d in range(dim):
            s += query[d] * k_cache[b, kv_head, j, d]
        new_max = max(row_max, s)
        rescale = math.exp(row_max - new_max)
        p = math.exp(s - new_max)
        row_sum = row_sum * rescale + p
        for d in range(dim):
            partials[t, d] = partials[t, d] * rescale + p * v_cache[b, kv_head, j, d]
        row_max = new_max
    maxima[t] = row_max
    sums[t] = row_sum
    cuda.syncthreads()
    top = -math.inf
    for other in range(DECODE_THREADS):
        top = max(top, maxima[other])
    total = 0.0
    for other in range(DECODE_THREADS):
        total += sums[other] * math.exp(maxima[other] - top)  # threads without positions add 0
    for d in range(t, dim, DECODE_THREADS):
        merged = 0.0
        for other in range(DECODE_THREADS):
            merged += partials[other, d] * math.exp(maxima[other] - top)
        out[b, h, d] = merged / total
