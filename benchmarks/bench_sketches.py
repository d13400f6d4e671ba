"""Sketches benchmark, in one run on this machine: mlsys_ext's Bloom filters against
rbloom, fastbloom-rs, pybloom-live and pyprobables; its Count-Min sketch against
Apache DataSketches and pyprobables.

    .venv/bin/python benchmarks/bench_sketches.py            # 1,000,000 keys
    .venv/bin/python benchmarks/bench_sketches.py --quick    # 100,000 keys

Bloom: random 63-bit keys in a numpy array at p = 1%; absent keys come from a
disjoint range. Count-Min: a Zipf(1.1) stream at eps = 0.001, delta = 0.01
(5 x 2719 counters for every library); estimates of every distinct key. Each
library gets the input form it is fastest with, prepared before timing (Python
lists of ints, or of str for pyprobables, which hashes only str and bytes): the
comparison favours the peers. Rates are the best of a few runs; numba's first
call (compiling, or loading its cache) is reported apart. MinHash and LSH
sections join with those structures (issue [B]).
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

P = 0.01
EPS, DELTA = 0.001, 0.01
CMS_WIDTH, CMS_DEPTH = 2719, 5  # ceil(e / EPS), ceil(ln(1 / DELTA)): the same shape for every library


def best_seconds(action, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - start)
    return best


class Contender:
    """One library in one comparison: ``fresh()`` an empty structure, ``add(s)`` the input,
    ``query(s)`` the answers the accuracy is computed from."""

    name = "?"
    repeats = 3  # pure-Python peers take seconds a run: they set 1

    def measure(self, n_added: int, n_queried: int) -> dict:
        s = self.fresh()
        first = best_seconds(lambda: self.add(s), 1)  # includes any compilation
        add = best_seconds(lambda: self.add(self.fresh()), self.repeats)
        answers = self.query(s)
        query = best_seconds(lambda: self.query(s), self.repeats)
        return {"add": n_added / add, "query": n_queried / query, "answers": answers, "first": first}


# -- Bloom filters ---------------------------------------------------------------------

class OursBloom(Contender):
    def __init__(self, present, absent, kind):
        from mlsys_ext.sketches import BloomFilter

        self.name, self.kind, self.cls = f"mlsys_ext {kind}", kind, BloomFilter
        self.n, self.present, self.absent = len(present), present, absent

    def fresh(self):
        return self.cls(self.n, P, kind=self.kind)

    def add(self, f):
        f.add_many(self.present)

    def query(self, f):
        return int(f.contains_many(self.absent).sum())


class Rbloom(Contender):
    name = "rbloom"

    def __init__(self, present, absent):
        import rbloom

        self.cls, self.n = rbloom.Bloom, len(present)
        self.present, self.absent = present.tolist(), absent.tolist()

    def fresh(self):
        return self.cls(self.n, P)

    def add(self, f):
        f.update(self.present)

    def query(self, f):
        return sum(map(f.__contains__, self.absent))


class FastbloomRs(Contender):
    name = "fastbloom-rs"

    def __init__(self, present, absent):
        import fastbloom_rs

        self.cls, self.n = fastbloom_rs.BloomFilter, len(present)
        # Its batch calls take lists of Python ints (contains_int_batch refuses numpy scalars).
        self.present, self.absent = present.tolist(), absent.tolist()

    def fresh(self):
        return self.cls(self.n, P)

    def add(self, f):
        f.add_int_batch(self.present)

    def query(self, f):
        return sum(f.contains_int_batch(self.absent))


class PybloomLive(Contender):
    name, repeats = "pybloom-live", 1

    def __init__(self, present, absent):
        import pybloom_live

        self.cls, self.n = pybloom_live.BloomFilter, len(present)
        self.present, self.absent = present.tolist(), absent.tolist()

    def fresh(self):
        return self.cls(capacity=self.n, error_rate=P)

    def add(self, f):
        for key in self.present:
            f.add(key)

    def query(self, f):
        return sum(key in f for key in self.absent)


class PyprobablesBloom(Contender):
    name, repeats = "pyprobables", 1

    def __init__(self, present, absent):
        from probables import BloomFilter

        self.cls, self.n = BloomFilter, len(present)
        self.present, self.absent = [str(k) for k in present.tolist()], [str(k) for k in absent.tolist()]

    def fresh(self):
        return self.cls(est_elements=self.n, false_positive_rate=P)

    def add(self, f):
        for key in self.present:
            f.add(key)

    def query(self, f):
        return sum(map(f.check, self.absent))


def bench_bloom(n: int, rng) -> list[tuple[str, bool, float]]:
    present = rng.integers(0, 1 << 62, size=n, dtype=np.uint64)
    absent = rng.integers(1 << 62, 1 << 63, size=n, dtype=np.uint64)
    contenders = [OursBloom(present, absent, "classic"), OursBloom(present, absent, "blocked"),
                  Rbloom(present, absent), FastbloomRs(present, absent), PybloomLive(present, absent),
                  PyprobablesBloom(present, absent)]
    print(f"Bloom filters: {n:,} random 63-bit keys at p = {P}; query = {n:,} absent keys")
    results = {c.name: c.measure(n, n) for c in contenders}
    rows = [(name, r["add"], r["query"], f"{r['answers'] / n:.5f}", r["first"]) for name, r in results.items()]
    table(("library", "add M keys/s", "query M keys/s", "measured FPR", "first add s"), rows)
    ours = results["mlsys_ext classic"]
    ratios(ours, results, ("rbloom", "fastbloom-rs", "pybloom-live", "pyprobables"), "mlsys_ext classic")
    faster = max(results["mlsys_ext classic"]["add"], results["mlsys_ext blocked"]["add"])
    return [("Bloom add >= 2x rbloom (classic)", ours["add"] / results["rbloom"]["add"], 2.0),
            ("Bloom add >= 2x rbloom (blocked)", faster / results["rbloom"]["add"], 2.0),
            ("Bloom query >= 3x fastbloom-rs (classic)", ours["query"] / results["fastbloom-rs"]["query"], 3.0)]


# -- Count-Min sketches ------------------------------------------------------------------

class OursCountMin(Contender):
    def __init__(self, stream, keys, conservative):
        from mlsys_ext.sketches import CountMinSketch

        self.name = "mlsys_ext" + (" conservative" if conservative else "")
        self.cls, self.conservative, self.stream, self.keys = CountMinSketch, conservative, stream, keys

    def fresh(self):
        return self.cls(EPS, DELTA, conservative=self.conservative)

    def add(self, s):
        s.add_many(self.stream)

    def query(self, s):
        return s.estimate_many(self.keys)


class DataSketchesCountMin(Contender):
    name, repeats = "datasketches", 1

    def __init__(self, stream, keys):
        import datasketches

        self.cls, self.stream, self.keys = datasketches.count_min_sketch, stream.tolist(), keys.tolist()

    def fresh(self):
        return self.cls(CMS_DEPTH, CMS_WIDTH)

    def add(self, s):
        update = s.update
        for key in self.stream:
            update(key)

    def query(self, s):
        return np.array([s.get_estimate(key) for key in self.keys])


class PyprobablesCountMin(Contender):
    name, repeats = "pyprobables", 1

    def __init__(self, stream, keys):
        from probables import CountMinSketch

        self.cls = CountMinSketch
        self.stream, self.keys = [str(k) for k in stream.tolist()], [str(k) for k in keys.tolist()]

    def fresh(self):
        return self.cls(width=CMS_WIDTH, depth=CMS_DEPTH)

    def add(self, s):
        for key in self.stream:
            s.add(key)

    def query(self, s):
        return np.array([s.check(key) for key in self.keys])


def bench_countmin(n: int, rng) -> list[tuple[str, bool, float]]:
    stream = rng.zipf(1.1, size=n).astype(np.uint64)
    keys, true = np.unique(stream, return_counts=True)
    contenders = [OursCountMin(stream, keys, False), OursCountMin(stream, keys, True),
                  DataSketchesCountMin(stream, keys), PyprobablesCountMin(stream, keys)]
    print(f"\nCount-Min: a Zipf(1.1) stream of {n:,} keys ({len(keys):,} distinct), eps = {EPS}, "
          f"delta = {DELTA} ({CMS_DEPTH} x {CMS_WIDTH}); query = every distinct key")
    results = {c.name: c.measure(n, len(keys)) for c in contenders}
    bound = EPS * n
    rows = []
    for name, r in results.items():
        errors = np.asarray(r["answers"], dtype=np.float64) - true
        rows.append((name, r["add"], r["query"], f"{errors.mean():.2f} / {(errors > bound).mean():.4%}", r["first"]))
    table(("library", "add M keys/s", "query M keys/s", "mean error / over eps N", "first add s"), rows)
    ours = results["mlsys_ext"]
    ratios(ours, results, ("datasketches", "pyprobables"), "mlsys_ext")
    return [("Count-Min add >= 5x DataSketches", ours["add"] / results["datasketches"]["add"], 5.0)]


# -- report ------------------------------------------------------------------------------

def table(header, rows) -> None:
    widths = [max(22, len(header[0]))] + [max(len(h), 12) for h in header[1:]]
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths))))
    print("-" * (sum(widths) + 2 * (len(widths) - 1)))
    for name, add, query, accuracy, first in rows:
        cells = [name.ljust(widths[0]), f"{add / 1e6:{widths[1]}.2f}", f"{query / 1e6:{widths[2]}.2f}",
                 accuracy.rjust(widths[3]), f"{first:{widths[4]}.3f}"]
        print("  ".join(cells))


def ratios(ours: dict, results: dict, peers, label: str) -> None:
    print(f"ratios, {label} / peer:")
    for name in peers:
        r = results[name]
        print(f"  {name:14s} add {ours['add'] / r['add']:8.2f}x   query {ours['query'] / r['query']:8.2f}x")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 keys instead of 1,000,000")
    args = parser.parse_args(argv)
    n = 100_000 if args.quick else 1_000_000
    rng = np.random.default_rng(0)

    import numba

    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, python {platform.python_version()}, "
          f"numba {numba.__version__} ({numba.get_num_threads()} threads); "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    targets = bench_bloom(n, rng) + bench_countmin(n, rng)
    print()
    for label, ratio, target in targets:
        print(f"{'PASS' if ratio >= target else 'FAIL'}  {label}: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
