"""Sketches benchmark, in one run on this machine: mlsys_ext's Bloom filters against
rbloom, fastbloom-rs, pybloom-live and pyprobables; its Count-Min sketch against
Apache DataSketches and pyprobables; its MinHash and MinHashLSH against datasketch;
its SimHashLSH against faiss's IndexLSH.

    .venv/bin/python benchmarks/bench_sketches.py            # 1,000,000 keys, 20,000 sets, 50,000 vectors
    .venv/bin/python benchmarks/bench_sketches.py --quick    # 100,000 keys, 5,000 sets, 10,000 vectors

Bloom: random 63-bit keys in a numpy array at p = 1%; absent keys come from a
disjoint range. Count-Min: a Zipf(1.1) stream at eps = 0.001, delta = 0.01
(5 x 2719 counters for every library); estimates of every distinct key. Each
library gets the input form it is fastest with, prepared before timing (Python
lists of ints, or of str for pyprobables, which hashes only str and bytes): the
comparison favours the peers. Rates are the best of a few runs, timed with the
garbage collector off (as timeit does: a collection pass over every object alive
would be charged to whichever library happened to trigger it); numba's first call
(compiling, or loading its cache) is reported apart.

MinHash: pairs of 150-token sets of known Jaccard similarity J, drawn uniform in
[0, 1] (the %lsh panel's generator; tokens of different pairs never overlap), at
num_perm = 128. mlsys_ext builds signatures from numpy arrays of int tokens and
from lists of str tokens (the ints' decimal strings); datasketch from the same
str tokens encoded to bytes, with MinHash.bulk (its default scheme, affine32).
Then the left set of every pair goes into an LSH index at threshold 0.8 and the
right one is queried: recall is the share of pairs with J >= 0.8 found,
precision the share of candidates returned with J >= 0.8. Both libraries choose
bands x rows from the same weights, at the default (0.5, 0.5) and at (0.3, 0.7),
which favours recall; datasketch inserts in an insertion session without its
duplicate check.

SimHash: clustered vectors (Gaussian clusters about random centres), queries
drawn from the same clusters; the truth is the exact cosine 10-NN (numpy).
faiss's IndexLSH (random rotation, then the signs) ranks every code by Hamming
distance; SimHashLSH looks up banded buckets (and probes), then ranks the
candidates by exact cosine. The first query of SimHashLSH sorts the band codes:
its add includes one query so that this counts as index building.
"""
from __future__ import annotations

import argparse
import gc
import time

import numpy as np

from mlsys_ext import describe_machine

P = 0.01
EPS, DELTA = 0.001, 0.01
CMS_WIDTH, CMS_DEPTH = 2719, 5  # ceil(e / EPS), ceil(ln(1 / DELTA)): the same shape for every library
NUM_PERM, SET_TOKENS = 128, 150
LSH_THRESHOLD = 0.8
LSH_WEIGHTS = ((0.5, 0.5), (0.3, 0.7))  # (false-positive, false-negative): the default, and one for recall
RECALL_WEIGHTS = LSH_WEIGHTS[1]         # the setting the LSH targets are checked at
DIM, CLUSTERS, SPREAD, K = 64, 100, 0.6, 10  # SPREAD: the clusters' standard deviation, centres ~ N(0, 1)


def best_seconds(action, repeats: int) -> float:
    best = float("inf")
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeats):
            start = time.perf_counter()
            action()
            best = min(best, time.perf_counter() - start)
    finally:
        gc.enable()
    return best


class Contender:
    """One library in one comparison: ``fresh()`` an empty structure, ``add(s)`` the input,
    ``query(s)`` the answers the accuracy is computed from. ``measure`` also returns the
    structure built (``state``), for a later comparison that starts from it."""

    name = "?"
    repeats = 3  # pure-Python peers take seconds a run: they set 1

    def measure(self, n_added: int, n_queried: int) -> dict:
        s = self.fresh()
        first = best_seconds(lambda: self.add(s), 1)  # includes any compilation
        add = best_seconds(lambda: self.add(self.fresh()), self.repeats)
        answers = self.query(s)
        query = best_seconds(lambda: self.query(s), self.repeats)
        return {"add": n_added / add, "query": n_queried / query, "answers": answers, "first": first,
                "state": s}


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


def bench_bloom(n: int, rng) -> list[tuple[str, float, float, str]]:
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
    return [("Bloom add >= 2x rbloom (classic)", ours["add"] / results["rbloom"]["add"], 2.0, "x"),
            ("Bloom add >= 2x rbloom (blocked)", faster / results["rbloom"]["add"], 2.0, "x"),
            ("Bloom query >= 3x fastbloom-rs (classic)", ours["query"] / results["fastbloom-rs"]["query"], 3.0, "x")]


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


def bench_countmin(n: int, rng) -> list[tuple[str, float, float, str]]:
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
    return [("Count-Min add >= 5x DataSketches", ours["add"] / results["datasketches"]["add"], 5.0, "x")]


# -- MinHash and MinHash LSH --------------------------------------------------------------

def halves(items):
    """The first and second half: the left and right sets of the pairs, in that order."""
    half = len(items) // 2
    return items[:half], items[half:]


class OursMinHash(Contender):
    def __init__(self, sets, tokens):
        from mlsys_ext.sketches import MinHash

        self.name, self.minhash, self.sets = f"mlsys_ext, {tokens}", MinHash(NUM_PERM), sets

    def fresh(self):
        return {}

    def add(self, built):
        built["signatures"] = self.minhash.signatures(self.sets)

    def query(self, built):
        return self.minhash.jaccard(*halves(built["signatures"]))


class DatasketchMinHash(Contender):
    name, repeats = "datasketch bulk, bytes", 1

    def __init__(self, sets):
        import datasketch

        self.cls, self.sets = datasketch.MinHash, sets

    def fresh(self):
        return {}

    def add(self, built):
        built["signatures"] = self.cls.bulk(self.sets, num_perm=NUM_PERM)

    def query(self, built):
        return np.array([a.jaccard(b) for a, b in zip(*halves(built["signatures"]))])


class OursLSH(Contender):
    def __init__(self, signatures, weights):
        from mlsys_ext.sketches import MinHashLSH

        self.cls, self.weights = MinHashLSH, weights
        self.indexed, self.queries = halves(signatures)
        self.keys = list(range(len(self.indexed)))
        self.name = "mlsys_ext {}x{} {}".format(*self.fresh().params, weights)

    def fresh(self):
        return self.cls(LSH_THRESHOLD, NUM_PERM, weights=self.weights)

    def add(self, lsh):
        lsh.insert_many(self.keys, self.indexed)

    def query(self, lsh):
        return lsh.query_many(self.queries)


class DatasketchLSH(Contender):
    def __init__(self, minhashes, weights):
        import datasketch

        self.cls, self.weights = datasketch.MinHashLSH, weights
        self.indexed, self.queries = halves(minhashes)
        self.keys = list(range(len(self.indexed)))
        lsh = self.fresh()
        self.name = f"datasketch {lsh.b}x{lsh.r} {weights}"

    def fresh(self):
        return self.cls(threshold=LSH_THRESHOLD, num_perm=NUM_PERM, weights=self.weights)

    def add(self, lsh):
        with lsh.insertion_session() as session:
            for key, minhash in zip(self.keys, self.indexed):
                session.insert(key, minhash, check_duplication=False)

    def query(self, lsh):
        return [lsh.query(minhash) for minhash in self.queries]


def recall_precision(candidates, similar) -> tuple[float, float]:
    """Query i's true partner is key i; every other key shares no token with it."""
    found = np.array([i in keys for i, keys in enumerate(candidates)])
    returned = sum(map(len, candidates))
    return float(found[similar].mean()), float((found & similar).sum() / max(returned, 1))


def bench_minhash(pairs: int, rng) -> list[tuple[str, float, float, str]]:
    # The %lsh panel's generator, imported rather than copied (the benchmark may import
    # the Jupyter wing; the core may not).
    from mlsys_ext.jupyter.lsh_panel import near_duplicate_pairs

    left, right, truth = near_duplicate_pairs(rng.uniform(0, 1, pairs), 1, SET_TOKENS, seed=int(rng.integers(2**31)))
    ints = left + right
    strs = [[str(token) for token in tokens.tolist()] for tokens in ints]
    encoded = [[token.encode() for token in tokens] for tokens in strs]
    signers = [OursMinHash(ints, "int tokens"), OursMinHash(strs, "str tokens"), DatasketchMinHash(encoded)]
    print(f"\nMinHash: {2 * pairs:,} sets of {SET_TOKENS} tokens ({pairs:,} pairs, Jaccard J uniform in [0, 1]), "
          f"num_perm = {NUM_PERM}; query = the Jaccard estimate of every pair")
    results = {c.name: c.measure(2 * pairs, pairs) for c in signers}
    rows = [(name, r["add"], r["query"], f"{np.abs(r['answers'] - truth).mean():.4f}", r["first"])
            for name, r in results.items()]
    table(("library", "signatures k/s", "estimates k/s", "mean |J error|", "first build s"), rows, scale=1e3)
    for ours in signers[:2]:
        ratios(results[ours.name], results, (DatasketchMinHash.name,), ours.name, ("build", "estimate"))
    targets = [(f"MinHash signatures >= 5x datasketch bulk ({ours.name})",
                results[ours.name]["add"] / results[DatasketchMinHash.name]["add"], 5.0, "x") for ours in signers[:2]]

    ours_signatures = results[signers[1].name]["state"]["signatures"]   # from the str tokens, as datasketch's
    their_minhashes = results[DatasketchMinHash.name]["state"]["signatures"]
    similar = truth >= LSH_THRESHOLD
    print(f"\nMinHash LSH at threshold {LSH_THRESHOLD}, num_perm = {NUM_PERM}, bands x rows from weights "
          f"(fp, fn): insert the {pairs:,} left sets, query the {pairs:,} right ones ({similar.sum():,} pairs "
          f"have J >= {LSH_THRESHOLD})")
    indexes = [c for weights in LSH_WEIGHTS
               for c in (OursLSH(ours_signatures, weights), DatasketchLSH(their_minhashes, weights))]
    results = {c.name: c.measure(pairs, pairs) for c in indexes}
    scores = {name: recall_precision(r["answers"], similar) for name, r in results.items()}
    rows = [(name, r["add"], r["query"], "{:.3f} / {:.3f}".format(*scores[name]), r["first"])
            for name, r in results.items()]
    table(("library bands x rows (weights)", "insert k/s", "query k/s", "recall / precision", "first insert s"),
          rows, scale=1e3)
    for ours, theirs in zip(indexes[::2], indexes[1::2]):
        ratios(results[ours.name], results, (theirs.name,), ours.name, ("insert", "query"))
    expected = ", ".join(f"{ours.name.split()[1]}: {ours.fresh().probability(truth[similar]).mean():.3f}"
                         for ours in indexes[::2])
    print(f"S-curve, expected recall over these pairs: {expected}")
    ours, theirs = (c for c in indexes if c.weights == RECALL_WEIGHTS)
    return targets + [
        (f"MinHash LSH recall >= 0.9 at threshold {LSH_THRESHOLD} ({ours.name})", scores[ours.name][0], 0.9, ""),
        (f"MinHash LSH query >= 1x datasketch at weights {RECALL_WEIGHTS}",
         results[ours.name]["query"] / results[theirs.name]["query"], 1.0, "x")]


# -- SimHash LSH ---------------------------------------------------------------------------

class OursSimHash(Contender):
    def __init__(self, base, queries, bits, bands, probes):
        from mlsys_ext.sketches import SimHashLSH

        self.name = f"mlsys_ext {bits} bits, {bands} bands, {probes} probes"
        self.cls, self.shape, self.base, self.queries = SimHashLSH, (bits, bands, probes), base, queries

    def fresh(self):
        bits, bands, probes = self.shape
        return self.cls(DIM, bits, bands, probes=probes)

    def add(self, index):
        index.add(self.base)
        index.query(self.queries[:1], K)   # sorts the band codes: index building, not querying

    def query(self, index):
        return index.query(self.queries, K)[0]


class FaissLSH(Contender):
    def __init__(self, base, queries, nbits):
        import faiss

        self.name, self.cls, self.nbits = f"faiss IndexLSH {nbits} bits", faiss.IndexLSH, nbits
        self.base, self.queries = base, queries

    def fresh(self):
        return self.cls(DIM, self.nbits)

    def add(self, index):
        index.add(self.base)

    def query(self, index):
        return index.search(self.queries, K)[1]


def cosine_knn(base, queries, k: int):
    """The exact k nearest ids by cosine, and the cosines of the 1st and the k-th of each query."""
    unit = base / np.linalg.norm(base, axis=1, keepdims=True)
    ids, cosines = [], []
    for chunk in np.array_split(queries, max(1, len(queries) // 256)):
        sims = (chunk / np.linalg.norm(chunk, axis=1, keepdims=True)) @ unit.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        ids.append(top)
        cosines.append(np.take_along_axis(sims, top, axis=1))
    cosines = np.vstack(cosines)
    return np.vstack(ids), cosines.max(axis=1), cosines.min(axis=1)


def bench_simhash(n: int, n_queries: int, rng) -> list[tuple[str, float, float, str]]:
    centres = rng.normal(size=(CLUSTERS, DIM))
    base, queries = ((centres[rng.integers(0, CLUSTERS, m)] + SPREAD * rng.normal(size=(m, DIM))).astype(np.float32)
                     for m in (n, n_queries))
    truth, first, kth = cosine_knn(base, queries, K)
    print(f"\nSimHash: {n:,} vectors of {DIM} dims in {CLUSTERS} clusters (spread {SPREAD}), {n_queries:,} "
          f"queries from the same clusters; true {K}-NN by exact cosine (mean cosine of the 1st {first.mean():.3f}, "
          f"of the {K}th {kth.mean():.3f})")
    contenders = [FaissLSH(base, queries, nbits) for nbits in (64, 128, 256)] + [
        OursSimHash(base, queries, *shape) for shape in ((60, 6, 0), (60, 6, 4), (64, 8, 0), (64, 8, 2))]
    results = {c.name: c.measure(n, n_queries) for c in contenders}
    recall = {name: float((r["answers"][:, :, None] == truth[:, None, :]).any(axis=2).mean())
              for name, r in results.items()}
    rows = [(name, r["add"], r["query"], f"{recall[name]:.3f}", r["first"]) for name, r in results.items()]
    table(("library", "add k vectors/s", "queries k/s", f"recall@{K}", "first add s"), rows, scale=1e3)
    faiss_best = max((c.name for c in contenders if isinstance(c, FaissLSH)), key=recall.get)
    reaching = [c.name for c in contenders if isinstance(c, OursSimHash) and recall[c.name] >= recall[faiss_best]]
    if reaching:
        ours = max(reaching, key=lambda name: results[name]["query"])
        print(f"at faiss's best recall@{K} ({faiss_best}: {recall[faiss_best]:.3f}), the fastest mlsys_ext setting "
              f"reaching it is {ours} (recall {recall[ours]:.3f}): "
              f"{results[ours]['query'] / results[faiss_best]['query']:.2f}x faiss's queries/s")
    return []


# -- report ------------------------------------------------------------------------------

def table(header, rows, scale: float = 1e6) -> None:
    """Rates divided by ``scale`` (1e6 for the "M ... /s" headers, 1e3 for "k")."""
    widths = [max(22, len(header[0]), *(len(row[0]) for row in rows))] + [max(len(h), 12) for h in header[1:]]
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths))))
    print("-" * (sum(widths) + 2 * (len(widths) - 1)))
    for name, add, query, accuracy, first in rows:
        cells = [name.ljust(widths[0]), f"{add / scale:{widths[1]}.2f}", f"{query / scale:{widths[2]}.2f}",
                 accuracy.rjust(widths[3]), f"{first:{widths[4]}.3f}"]
        print("  ".join(cells))


def ratios(ours: dict, results: dict, peers, label: str, columns=("add", "query")) -> None:
    print(f"ratios, {label} / peer:")
    width = max(14, *map(len, peers))
    for name in peers:
        r = results[name]
        print(f"  {name:{width}s} {columns[0]} {ours['add'] / r['add']:8.2f}x   {columns[1]} {ours['query'] / r['query']:8.2f}x")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="100,000 keys, 5,000 sets and 10,000 vectors instead of 1,000,000, 20,000 and 50,000")
    args = parser.parse_args(argv)
    n, pairs, vectors, queries = (100_000, 2_500, 10_000, 200) if args.quick else (1_000_000, 10_000, 50_000, 1_000)
    rng = np.random.default_rng(0)

    print(describe_machine(), end="\n\n")
    targets = (bench_bloom(n, rng) + bench_countmin(n, rng) + bench_minhash(pairs, rng)
               + bench_simhash(vectors, queries, rng))
    print()
    for label, value, target, unit in targets:
        print(f"{'PASS' if value >= target else 'FAIL'}  {label}: {value:.2f}{unit}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
