"""Fixed costs of every public kernel, sketch and serving entry point (issue [J] item 2).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/bench_fixed_costs.py

Times one whole call of each entry point, the best of several after a warm-up call
(so numba's compile or cache load is excluded), at a tiny input, where the call is
nearly all fixed cost (checks, copies, allocations, dispatch), and at the size the
project's panels and benchmarks use by default. Not a test: compare runs made on a
quiet machine, and read each figure beside the load average printed with it.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from mlsys_ext import describe_machine
from mlsys_ext.kernels import attention, attention_decode, hogwild_sgd, kmeans, kmeans_plusplus
from mlsys_ext.kernels import sparse_classification
from mlsys_ext.serving import ContinuousBatcher, Lengths, Workload, simulate
from mlsys_ext.sketches import (BloomFilter, CountingBloomFilter, CountMinSketch, MinHash, MinHashLSH,
                                ScalableBloomFilter, SimHashLSH, TopK)

THREADS = 2  # the panels' default on this 2-core machine; fixed, so runs compare across machines


def best_seconds(call, prepare=None, repeats: int = 20, budget: float = 1.0) -> float:
    """The fastest of up to ``repeats`` calls (at least 3) within about ``budget`` seconds, after a
    warm-up call; ``prepare()``, untimed, makes each call's arguments (a fresh filter to add to)."""
    prepare = prepare or (lambda: ())
    call(*prepare())
    best, spent, done = float("inf"), 0.0, 0
    while done < 3 or (done < repeats and spent < budget):
        args = prepare()
        start = time.perf_counter()
        call(*args)
        seconds = time.perf_counter() - start
        best, spent, done = min(best, seconds), spent + seconds, done + 1
    return best


def blobs(n: int, dims: int, centers: int, seed: int = 0) -> np.ndarray:
    """The ``%kmeans`` panel's data: float32 points around random means."""
    rng = np.random.default_rng(seed)
    means = rng.uniform(-10, 10, (centers, dims))
    return (means[rng.integers(centers, size=n)] + rng.standard_normal((n, dims))).astype(np.float32)


def kmeans_cases():
    tiny = blobs(10, 2, 2)
    panel = blobs(10_000, 8, 8)  # the %kmeans panel's defaults, traced one iteration per call
    bench = blobs(1_000_000, 32, 64)  # bench_kernels.py's size
    starts = {id(X): kmeans_plusplus(X, k, seed=0) for X, k in ((tiny, 2), (panel, 8), (bench, 64))}

    def one_step(X, k, **options):
        return lambda: kmeans(X, k, init=starts[id(X)], max_iter=1, backend="numba", threads=THREADS, **options)

    yield "kmeans numba max_iter=1", "10x2 k=2", one_step(tiny, 2), "10,000x8 k=8 (panel)", one_step(panel, 8)
    yield ("kmeans numba max_iter=1 tol=0", "10x2 k=2", one_step(tiny, 2, tol=0), "10,000x8 k=8 (panel)",
           one_step(panel, 8, tol=0))
    yield ("kmeans numba max_iter=1", "10x2 k=2", one_step(tiny, 2), "1Mx32 k=64 (bench)", one_step(bench, 64))
    yield ("kmeans numpy max_iter=1", "10x2 k=2",
           lambda: kmeans(tiny, 2, init=starts[id(tiny)], max_iter=1, backend="numpy"), "10,000x8 k=8 (panel)",
           lambda: kmeans(panel, 8, init=starts[id(panel)], max_iter=1, backend="numpy"))
    yield ("kmeans numba (to convergence)", "10x2 k=2",
           lambda: kmeans(tiny, 2, seed=0, backend="numba", threads=THREADS), "10,000x8 k=8 (panel)",
           lambda: kmeans(panel, 8, seed=0, backend="numba", threads=THREADS))
    yield ("kmeans_plusplus", "10x2 k=2", lambda: kmeans_plusplus(tiny, 2, seed=0), "10,000x8 k=8 (panel)",
           lambda: kmeans_plusplus(panel, 8, seed=0))


def hogwild_cases():
    tiny = sparse_classification(10, 16, 4)
    panel = sparse_classification(40_000, 2**14, 16, seed=7)  # the %hogwild panel's defaults

    def train(problem, epochs, mode="hogwild"):
        return lambda: hogwild_sgd(*problem, epochs=epochs, threads=THREADS, mode=mode, seed=0, backend="numba")

    yield "hogwild_sgd hogwild", "10 rows, 1 epoch", train(tiny, 1), "40,000x2^14 nnz 16, 4 epochs (panel)", \
        train(panel, 4)
    yield "hogwild_sgd serial", "10 rows, 1 epoch", train(tiny, 1, "serial"), \
        "40,000x2^14 nnz 16, 4 epochs (panel)", train(panel, 4, "serial")


def attention_cases():
    rng = np.random.default_rng(0)

    def qkv(batch, heads, length, dim):
        return [rng.standard_normal((batch, heads, length, dim), dtype=np.float32) for _ in range(3)]

    tiny, panel = qkv(1, 1, 1, 64), qkv(1, 4, 512, 64)  # the %attention panel's warm-up and defaults
    for backend in ("numba", "numpy"):
        yield (f"attention {backend}", "1x1x1x64", lambda b=backend: attention(*tiny, backend=b, threads=THREADS),
               "1x4x512x64 (panel)", lambda b=backend: attention(*panel, backend=b, threads=THREADS))
    yield ("attention numba causal", "1x1x1x64", lambda: attention(*tiny, causal=True, backend="numba",
                                                                   threads=THREADS),
           "1x4x512x64 (panel)", lambda: attention(*panel, causal=True, backend="numba", threads=THREADS))
    # decode as TinyTransformer serves it: 4 heads over 2 kv heads of 32, a batch of 64 sequences
    tiny_q = rng.standard_normal((1, 1, 64), dtype=np.float32)
    tiny_cache = rng.standard_normal((1, 1, 1, 64), dtype=np.float32)
    q = rng.standard_normal((64, 4, 32), dtype=np.float32)
    caches = [rng.standard_normal((64, 2, 512, 32), dtype=np.float32) for _ in range(2)]
    lengths = rng.integers(1, 513, 64)
    for backend in ("numba", "numpy"):
        yield (f"attention_decode {backend}", "1x1x64, L=1",
               lambda b=backend: attention_decode(tiny_q, tiny_cache, tiny_cache, [1], backend=b, threads=THREADS),
               "64x4x32, cache 64x2x512 (serve)",
               lambda b=backend: attention_decode(q, *caches, lengths, backend=b, threads=THREADS))


def sketch_cases():
    rng = np.random.default_rng(0)
    ten = np.arange(10, dtype=np.uint64)
    keys = rng.integers(0, 2**63, 100_000, dtype=np.uint64)  # the %bloom panel's capacity
    stream = rng.zipf(1.2, size=200_000).astype(np.uint64)  # the %cms panel's stream
    for kind in ("classic", "blocked"):
        bf = BloomFilter(100_000, 0.01, kind=kind)
        bf.add_many(keys)
        yield f"BloomFilter {kind} add", "1 key (add)", lambda f=bf: f.add(7), "100,000 keys", \
            lambda f=bf: f.add_many(keys)
        yield f"BloomFilter {kind} add_many", "10 keys", lambda f=bf: f.add_many(ten), "100,000 keys", \
            lambda f=bf: f.add_many(keys)
        yield f"BloomFilter {kind} query", "1 key (in)", lambda f=bf: 7 in f, "100,000 keys", \
            lambda f=bf: f.contains_many(keys)
        yield f"BloomFilter {kind} contains_many", "10 keys", lambda f=bf: f.contains_many(ten), "100,000 keys", \
            lambda f=bf: f.contains_many(keys)
    counting = CountingBloomFilter(100_000, 0.01)
    for f in (counting, ScalableBloomFilter(100_000, 0.01)):
        f.add_many(keys)
        name = type(f).__name__
        yield f"{name} add", "1 key (add)", lambda f=f: f.add(7), "100,000 keys", lambda f=f: f.add_many(keys)
        yield f"{name} query", "1 key (in)", lambda f=f: 7 in f, "100,000 keys", lambda f=f: f.contains_many(keys)
    yield "CountingBloomFilter remove", "1 key", lambda: (counting.add(8), counting.remove(8)), "100,000 keys", \
        lambda: (counting.add_many(keys), counting.remove_many(keys))
    for conservative in (False, True):
        cms = CountMinSketch(0.001, 0.01, conservative=conservative)
        name = "CountMinSketch" + (" conservative" if conservative else "")
        yield f"{name} add", "1 key (add)", lambda s=cms: s.add(7), "200,000 keys (panel)", \
            lambda s=cms: s.add_many(stream)
        yield f"{name} add_many", "10 keys", lambda s=cms: s.add_many(ten), "200,000 keys (panel)", \
            lambda s=cms: s.add_many(stream)
        yield f"{name} estimate", "1 key", lambda s=cms: s.estimate(7), "200,000 keys (panel)", \
            lambda s=cms: s.estimate_many(stream)
    top = TopK(CountMinSketch(0.001, 0.01), 100)
    yield "TopK add_many", "10 keys", lambda: top.add_many(ten), "200,000 keys (panel)", lambda: top.add_many(stream)

    # MinHash and LSH at the %lsh panel's sizes: 760 pairs of 200-token sets
    sets = [rng.permutation(np.arange(i * 400, i * 400 + 400, dtype=np.uint64))[:200] for i in range(1520)]
    word_sets = [[f"w{t}" for t in s] for s in sets[:100]]
    minhash = MinHash(128)
    yield "MinHash signature", "1 token", lambda: minhash.signature([7]), "200 int tokens", \
        lambda: minhash.signature(sets[0])
    yield "MinHash signatures", "1 set of 1 token", lambda: minhash.signatures([[7]]), "1,520 sets x 200 (panel)", \
        lambda: minhash.signatures(sets)
    yield "MinHash signatures str", "1 set of 1 token", lambda: minhash.signatures([["w7"]]), \
        "100 sets x 200 str", lambda: minhash.signatures(word_sets)
    signatures = minhash.signatures(sets)
    index = MinHashLSH(0.8, 128)
    index.insert_many(list(range(-760, 0)), signatures[:760])
    yield "MinHashLSH insert", "1 signature", lambda fresh: fresh.insert(0, signatures[0]), \
        "760 signatures (panel)", lambda fresh: fresh.insert_many(list(range(760)), signatures[:760]), \
        lambda: (MinHashLSH(0.8, 128),)
    yield "MinHashLSH query", "1 signature", lambda: index.query(signatures[0]), "760 signatures (panel)", \
        lambda: index.query_many(signatures[760:])

    # SimHash at the %lsh --simhash panel's sizes: 10,000 32-dim vectors, 100 queries
    base = rng.standard_normal((10_000, 32)).astype(np.float32)
    asked = rng.standard_normal((100, 32)).astype(np.float32)
    simhash = SimHashLSH(32, bits=64, bands=8)
    simhash.add(base)
    yield "SimHashLSH add", "1 vector", lambda fresh: fresh.add(base[0]), "10,000 vectors (panel)", \
        lambda fresh: fresh.add(base), lambda: (SimHashLSH(32, bits=64, bands=8),)
    yield "SimHashLSH query", "1 vector", lambda: simhash.query(asked[0], k=10), "100 queries (panel)", \
        lambda: simhash.query(asked, k=10, probes=2)


def serving_cases():
    tiny = Workload([0.0, 0.1], [4, 4], [2, 2])  # the %batching panel's warm-up
    chat = Workload.gamma(8.0, 1.0, 1000, Lengths.uniform(32, 512), Lengths.exponential(128.0, high=1024), seed=0)
    panel = ContinuousBatcher(64, 4096, chunk=512, kv_tokens=65_536, block=16)  # the panel's defaults
    yield "simulate continuous", "2 requests", lambda: simulate(tiny, ContinuousBatcher(2, 64)), \
        "1,000 chat requests at 8/s (panel)", lambda: simulate(chat, panel)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run only the entry points whose name contains this")
    args = parser.parse_args()
    import numba

    numba.set_num_threads(min(THREADS, numba.config.NUMBA_NUM_THREADS))
    print(describe_machine(), end="\n\n")
    print(f"best whole-call time after a warm-up call; numba {numba.get_num_threads()} threads; "
          "load = 1-minute load average when the row was measured\n")
    print(f"{'entry point':38s} {'tiny input':18s} {'tiny':>10s}   {'default input':38s} {'default':>10s}  load")
    for cases in (kmeans_cases, hogwild_cases, attention_cases, sketch_cases, serving_cases):
        for name, tiny_input, tiny_call, default_input, default_call, *prepare in cases():
            if args.only not in name:
                continue
            # a call taking a fresh object (``prepare``) gets one for the tiny input too
            fresh = prepare[0] if prepare else None
            tiny = best_seconds(tiny_call, fresh, repeats=200, budget=0.3)
            default = best_seconds(default_call, fresh, repeats=20, budget=1.5)
            print(f"{name:38s} {tiny_input:18s} {_format(tiny):>10s}   {default_input:38s} {_format(default):>10s}"
                  f"  {os.getloadavg()[0]:.2f}", flush=True)


def _format(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} us" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"


if __name__ == "__main__":
    main()
