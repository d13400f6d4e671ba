"""Quick self-check of BloomFilter throughput: 1M uint64 keys at p = 1%, both kinds.

    .venv/bin/python benchmarks/bench_bloom_quick.py [--keys N] [--repeats R]

Prints the first-call time (numba compiling, or loading its cache) apart from the
steady state: add, query of present keys and of absent keys, in keys/s (best of R
runs), and the measured false-positive rate beside fpr_exact. Not a test; the
comparison with other libraries is benchmarks/bench_sketches.py (issue [B]).
"""
import argparse
import time

import numba
import numpy as np

from mlsys_ext import describe_machine
from mlsys_ext.sketches import BloomFilter


def best_rate(action, n_keys: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - start)
    return n_keys / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(describe_machine(), end="\n\n")
    rng = np.random.default_rng(0)
    present = rng.integers(0, 2**63, args.keys, dtype=np.uint64)
    absent = rng.integers(2**63, 2**64 - 1, args.keys, dtype=np.uint64)
    print(f"{args.keys:,} uint64 keys, p = 1%, {numba.get_num_threads()} numba threads")
    for kind in ("classic", "blocked"):
        start = time.perf_counter()
        warm = BloomFilter(10, 0.01, kind=kind)
        warm.add_many(present[:20_000])
        warm.contains_many(present[:20_000])
        first_call = time.perf_counter() - start

        def fresh_add():
            BloomFilter(args.keys, 0.01, kind=kind).add_many(present)

        bf = BloomFilter(args.keys, 0.01, kind=kind)
        bf.add_many(present)
        add = best_rate(fresh_add, args.keys, args.repeats)
        query_present = best_rate(lambda: bf.contains_many(present), args.keys, args.repeats)
        query_absent = best_rate(lambda: bf.contains_many(absent), args.keys, args.repeats)
        measured = bf.contains_many(absent).mean()
        sizing = 1 / best_rate(lambda: BloomFilter(args.keys, 0.01, kind=kind), 1, args.repeats)  # seconds
        print(f"{kind:8s} first call {first_call:6.2f} s | construct {1e3 * sizing:5.2f} ms | add {add / 1e6:6.1f} M keys/s | "
              f"query present {query_present / 1e6:6.1f} M/s, absent {query_absent / 1e6:6.1f} M/s | "
              f"FPR measured {measured:.5f}, exact {bf.fpr_exact():.5f}, classic {bf.fpr_classic():.5f} | "
              f"{bf.memory_bytes / 2**20:.2f} MiB, k={bf.num_hashes}")


if __name__ == "__main__":
    main()
