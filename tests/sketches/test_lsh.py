"""MinHashLSH and SimHashLSH: candidate rates on the S-curve, the choice of bands and
rows, remove, merge, pickling, k-NN recall with multi-probe, exact re-ranking,
clear refusals."""
import copy
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

from mlsys_ext.sketches import MinHash, MinHashLSH, SimHashLSH, _lsh_kernels
from mlsys_ext.sketches._lsh import error_areas, optimal_params, s_curve


def signature_pairs(rng, similarity, n_pairs, num_perm):
    """Pairs of synthetic signatures whose slots agree independently with probability
    ``similarity``: exactly the model behind the S-curve."""
    a = rng.integers(0, 2**61 - 1, (n_pairs, num_perm), dtype=np.uint64)
    b = rng.integers(0, 2**61 - 1, (n_pairs, num_perm), dtype=np.uint64)
    agree = rng.random((n_pairs, num_perm)) < similarity
    b[agree] = a[agree]
    return a, b


def set_pairs(rng, jaccard, size, n_pairs):
    """Random int sets of ``size`` tokens in pairs of Jaccard similarity (about) ``jaccard``."""
    shared = round(2 * size * jaccard / (1 + jaccard))
    tokens = rng.integers(0, 2**62, (n_pairs, 2 * size - shared))
    return ([row[:size] for row in tokens], [np.concatenate([row[:shared], row[size:]]) for row in tokens],
            shared / (2 * size - shared))


def candidate_rate(lsh, a, b):
    """Fraction of pairs j for which querying b[j] finds key j (a[j] indexed under j)."""
    lsh.insert_many(np.arange(len(a)), a)
    found = [j in candidates for j, candidates in enumerate(lsh.query_many(b))]
    return np.mean(found)


def within_binomial(rate, p, n, sigmas=4.5):
    return abs(rate - p) <= sigmas * np.sqrt(max(p * (1 - p), 1e-4) / n) + 1e-9


# -- MinHashLSH: the S-curve ------------------------------------------------------------

@pytest.mark.parametrize("threshold, num_perm, params", [(0.8, 128, None), (0.5, 64, None), (0.5, 100, (20, 5))])
def test_candidate_rates_follow_the_s_curve_on_synthetic_signatures(threshold, num_perm, params):
    rng = np.random.default_rng(num_perm)
    n = 400
    for similarity in (0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0):
        lsh = MinHashLSH(threshold, num_perm, params=params)
        a, b = signature_pairs(rng, similarity, n, num_perm)
        rate = candidate_rate(lsh, a, b)
        assert within_binomial(rate, lsh.probability(similarity), n), (similarity, rate)


@pytest.mark.parametrize("seed", [0, 1])
def test_candidate_rates_follow_the_s_curve_on_minhashed_sets(seed):
    """End to end: sets at controlled Jaccard similarities, MinHash, then the index."""
    rng = np.random.default_rng(10 + seed)
    mh = MinHash(128, seed=seed)
    n = 300
    for jaccard in (0.3, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95):
        a, b, exact = set_pairs(rng, jaccard, 100, n)
        lsh = MinHashLSH(0.8, 128, seed=seed)
        rate = candidate_rate(lsh, mh.signatures(a), mh.signatures(b))
        assert within_binomial(rate, lsh.probability(exact), n), (exact, rate)


def test_identical_sets_are_always_found_and_empty_sets_find_each_other():
    mh = MinHash(128)
    lsh = MinHashLSH(0.9, 128)
    sigs = mh.signatures([list(range(i, i + 50)) for i in range(0, 5000, 50)] + [[], []])
    lsh.insert_many([f"doc{i}" for i in range(len(sigs))], sigs)
    assert all(f"doc{i}" in lsh.query(sig) for i, sig in enumerate(sigs))
    assert set(lsh.query(sigs[-1])) == {f"doc{len(sigs) - 2}", f"doc{len(sigs) - 1}"}


# -- MinHashLSH: bands and rows ---------------------------------------------------------

def brute_force_best(threshold, num_perm, weights):
    """Every (b, r), integrated on a fine trapezoid grid instead of by quadrature."""
    best, best_error = None, np.inf
    below, above = np.linspace(0, threshold, 4001), np.linspace(threshold, 1, 4001)
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = np.trapezoid(s_curve(below, b, r), below)
            fn = np.trapezoid(1 - s_curve(above, b, r), above)
            error = weights[0] * fp + weights[1] * fn
            if error < best_error - 1e-12:
                best, best_error = (b, r), error
    return best, best_error


@pytest.mark.parametrize("threshold, num_perm, weights", [
    (0.8, 128, (0.5, 0.5)), (0.5, 128, (0.5, 0.5)), (0.9, 64, (0.5, 0.5)), (0.3, 32, (0.5, 0.5)),
    (0.8, 128, (0.9, 0.1)), (0.8, 128, (0.1, 0.9)), (0.7, 10, (1, 0))])
def test_chosen_params_minimise_the_weighted_error(threshold, num_perm, weights):
    lsh = MinHashLSH(threshold, num_perm, weights=weights)
    bands, rows = lsh.params
    assert bands * rows <= num_perm
    (_, _), best_error = brute_force_best(threshold, num_perm, weights)
    fp, fn = lsh.error_areas()
    assert weights[0] * fp + weights[1] * fn <= best_error + 1e-6


def test_default_params_put_the_s_curve_through_the_threshold():
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    bands, rows = lsh.params
    assert (bands, rows) == (9, 13)
    crossing = (1 - 0.5 ** (1 / bands)) ** (1 / rows)      # where P(s) = 1/2
    assert abs(crossing - 0.8) < 0.05
    assert lsh.probability(0.5) < 0.01 and lsh.probability(0.95) > 0.99
    assert lsh.probability(0.0) == 0.0 and lsh.probability(1.0) == 1.0
    assert np.all(np.diff(lsh.probability(np.linspace(0, 1, 101))) >= 0)


def test_weights_move_the_s_curve():
    """Weighting false positives pushes the 1/2 crossing above the threshold; weighting
    false negatives pulls it below."""
    def crossing(weights):
        b, r = MinHashLSH(0.7, 128, weights=weights).params
        return (1 - 0.5 ** (1 / b)) ** (1 / r)
    assert crossing((0.9, 0.1)) > crossing((0.5, 0.5)) > crossing((0.1, 0.9))


def test_error_areas_match_direct_integration():
    fp, fn = error_areas(0.6, 7, 11)
    s_below, s_above = np.linspace(0, 0.6, 100_001), np.linspace(0.6, 1, 100_001)
    assert fp == pytest.approx(np.trapezoid(s_curve(s_below, 7, 11), s_below), rel=1e-6)
    assert fn == pytest.approx(np.trapezoid(1 - s_curve(s_above, 7, 11), s_above), rel=1e-6)


def test_explicit_params_are_respected_and_unused_slots_warned_about():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert MinHashLSH(num_perm=128, params=(16, 8)).params == (16, 8)
        assert MinHashLSH(num_perm=128, params=[32, 4]).params == (32, 4)
        MinHashLSH(0.8, 128)                    # the optimum uses 117 slots: no warning
    with pytest.warns(UserWarning, match=r"params=\(10, 10\) use 100 of the num_perm=128 .* other 28"):
        lsh = MinHashLSH(num_perm=128, params=(10, 10))
    assert lsh.params == (10, 10)
    a, b = signature_pairs(np.random.default_rng(0), 0.0, 50, 128)
    b[:, 100:] = a[:, 100:]                    # agreement in the unused slots makes no candidates
    assert candidate_rate(lsh, a, b) == 0.0


def test_optimal_params_are_cached_and_quick_for_large_num_perm():
    assert optimal_params(0.8, 1024, 0.5, 0.5) == optimal_params(0.8, 1024, 0.5, 0.5)
    b, r = optimal_params(0.8, 1024, 0.5, 0.5)
    assert b * r <= 1024 and abs((1 - 0.5 ** (1 / b)) ** (1 / r) - 0.8) < 0.03


# -- MinHashLSH: contents -----------------------------------------------------------------

def small_index(keys=("a", "b", "c"), seed=0):
    mh = MinHash(64)
    lsh = MinHashLSH(0.5, 64, seed=seed)
    sigs = mh.signatures([list(range(i * 100, i * 100 + 100)) for i in range(len(keys))])
    lsh.insert_many(list(keys), sigs)
    return lsh, sigs


def test_insert_query_remove_and_contains():
    lsh, sigs = small_index()
    assert len(lsh) == 3 and "a" in lsh and "z" not in lsh and [1] not in lsh
    assert lsh.query(sigs[1]) == ["b"] and lsh.keys() == ["a", "b", "c"]
    lsh.remove("b")
    assert len(lsh) == 2 and "b" not in lsh and lsh.query(sigs[1]) == []
    assert all(bucket for table in lsh._tables for bucket in table.values())   # no empty buckets left
    with pytest.raises(KeyError):
        lsh.remove("b")
    lsh.insert("b", sigs[1])                   # a removed key can come back
    assert lsh.query(sigs[1]) == ["b"] and len(lsh) == 3
    lsh.insert(("tuple", 1), sigs[1])          # any hashable key; one signature, two keys
    assert sorted(map(str, lsh.query(sigs[1]))) == ["('tuple', 1)", "b"]
    assert lsh.query_many(sigs)[0] == ["a"]


def test_parallel_band_hashing_equals_serial(split_from):
    """A batch large enough to be split over threads gives the index of single inserts."""
    rng = np.random.default_rng(8)
    sigs = rng.integers(0, 2**61, (2 * split_from // 117, 128), dtype=np.uint64)
    batched, single = MinHashLSH(0.8, 128), MinHashLSH(0.8, 128)
    batched.insert_many(list(range(len(sigs))), sigs)
    for key, sig in enumerate(sigs):
        single.insert(key, sig)
    assert batched == single
    assert batched.query_many(sigs[:50]) == [single.query(sig) for sig in sigs[:50]]


def test_keys_are_unique_and_insert_many_is_all_or_nothing():
    lsh, sigs = small_index()
    with pytest.raises(ValueError, match="key 'a' is already in the index"):
        lsh.insert("a", sigs[0])
    with pytest.raises(ValueError, match="key 'c' is already in the index"):
        lsh.insert_many(["x", "c"], sigs[:2])
    with pytest.raises(ValueError, match="key 'x' appears more than once"):
        lsh.insert_many(["x", "y", "x"], sigs)
    with pytest.raises(TypeError, match="keys must be hashable, got a list"):
        lsh.insert_many(["x", ["y"]], sigs[:2])
    with pytest.raises(ValueError, match="2 keys but 3 signatures"):
        lsh.insert_many(["x", "y"], sigs)
    assert lsh.keys() == ["a", "b", "c"]


def test_bad_signatures_are_refused_clearly():
    lsh, sigs = small_index()
    with pytest.raises(ValueError, match=r"signature must have shape \(64,\) \(num_perm=64\), got shape \(65,\)"):
        lsh.query(np.zeros(65, dtype=np.uint64))
    with pytest.raises(ValueError, match="use query_many/insert_many for many"):
        lsh.query(sigs)
    with pytest.raises(ValueError, match=r"signatures must have shape \(n, 64\)"):
        lsh.query_many(sigs[0])
    with pytest.raises(TypeError, match="uint64 MinHash slots"):
        lsh.insert("z", np.zeros(64))
    with pytest.raises(TypeError, match="use insert for one key"):
        lsh.insert_many("z", sigs[:1])


# -- MinHashLSH: combining and pickling -------------------------------------------------------

def test_merge_and_union_hold_the_entries_of_both():
    mh = MinHash(128)
    rng = np.random.default_rng(3)
    sets = [rng.integers(0, 1000, 80) for _ in range(200)]
    sigs = mh.signatures(sets)
    whole = MinHashLSH(0.6, 128)
    whole.insert_many(list(range(200)), sigs)
    left, right = MinHashLSH(0.6, 128), MinHashLSH(0.6, 128)
    left.insert_many(list(range(100)), sigs[:100])
    right.insert_many(list(range(100, 200)), sigs[100:])
    union = left | right
    assert len(left) == 100 and len(union) == 200
    assert [sorted(c) for c in union.query_many(sigs)] == [sorted(c) for c in whole.query_many(sigs)]
    right.insert(5, sigs[5])                   # in both, with the same signature: kept once
    assert left.merge(right) is left and len(left) == 200
    assert [sorted(c) for c in left.query_many(sigs)] == [sorted(c) for c in whole.query_many(sigs)]


def test_merge_refuses_conflicts_and_other_shapes():
    left, sigs = small_index(("a", "b"))
    right = MinHashLSH(0.5, 64)
    right.insert_many(["a", "c"], sigs[::-1])      # "a" under b's signature
    with pytest.raises(ValueError, match="key 'a' .* different signatures"):
        left.merge(right)
    assert left.keys() == ["a", "b"]
    for other, words in [(MinHashLSH(0.5, 64, seed=1), r"seed \(0 vs 1\)"),
                         (MinHashLSH(0.5, 64, params=(16, 4)), "differ in bands"),
                         (MinHashLSH(0.5, 128), r"num_perm \(64 vs 128\)")]:
        with pytest.raises(ValueError, match=words):
            left.merge(other)
    with pytest.raises(TypeError, match="another MinHashLSH"):
        left.merge({"a": 1})
    with pytest.raises(TypeError):
        left | {1}


def test_indexes_built_in_another_process_merge():
    code = ("import pickle, sys; from mlsys_ext.sketches import MinHash, MinHashLSH; mh = MinHash(128, seed=4); "
            "lsh = MinHashLSH(0.7, 128, seed=9); "
            "lsh.insert_many(['r%d' % i for i in range(50)], mh.signatures([range(i, i + 60) for i in range(50)])); "
            "sys.stdout.buffer.write(pickle.dumps(lsh))")
    remote = pickle.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout)
    mh = MinHash(128, seed=4)
    local = MinHashLSH(0.7, 128, seed=9)
    local.insert_many([f"l{i}" for i in range(50)], mh.signatures([range(i + 1000, i + 1060) for i in range(50)]))
    merged = local | remote
    assert "r10" in merged.query(mh.signature(range(10, 70)))
    assert "l10" in merged.query(mh.signature(range(1010, 1070)))


def test_pickle_and_copy_keep_everything():
    lsh, sigs = small_index()
    lsh.remove("c")
    for clone in (pickle.loads(pickle.dumps(lsh)), copy.deepcopy(lsh), copy.copy(lsh)):
        assert clone == lsh and clone is not lsh
        assert clone.params == lsh.params and clone.threshold == 0.5 and clone.keys() == ["a", "b"]
        assert clone.query_many(sigs) == lsh.query_many(sigs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        explicit = MinHashLSH(num_perm=64, params=(8, 8))
        assert pickle.loads(pickle.dumps(explicit)) == explicit
    empty = MinHashLSH()
    assert pickle.loads(pickle.dumps(empty)) == empty and len(pickle.loads(pickle.dumps(empty))) == 0


def test_repr_names_the_parameters_and_shape():
    text = repr(small_index()[0])
    assert "threshold=0.5" in text and "num_perm=64" in text and "bands x" in text and "3 keys" in text


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(threshold=0.0), ValueError, r"threshold must be a real number in the open interval \(0, 1\), got 0.0"),
    (dict(threshold=1), ValueError, "threshold"),
    (dict(threshold=float("nan")), ValueError, "threshold"),
    (dict(threshold="0.8"), TypeError, "threshold"),
    (dict(num_perm=0), ValueError, r"num_perm must be an int in \[1, 65536\), got 0"),
    (dict(num_perm=12.0), TypeError, "num_perm"),
    (dict(weights=(-0.1, 1)), ValueError, r"weights must be a pair .* reals >= 0, not both 0, got \(-0.1, 1\)"),
    (dict(weights=(0, 0)), ValueError, "not both 0"),
    (dict(weights=(float("inf"), 1)), ValueError, "weights"),
    (dict(weights=(1,)), TypeError, "weights must be a pair"),
    (dict(weights=0.5), TypeError, "weights must be a pair"),
    (dict(weights=("a", "b")), TypeError, "weights"),
    (dict(weights=(True, 1)), TypeError, "weights"),
    (dict(params=(0, 5)), ValueError, r"params must be None .* or a pair \(bands, rows\) of ints >= 1, got \(0, 5\)"),
    (dict(params=(10, 20)), ValueError, r"params=\(10, 20\) need bands \* rows = 200 .* more than num_perm=128"),
    (dict(params=(1.5, 2)), TypeError, "params"),
    (dict(params="9x13"), TypeError, "params"),
    (dict(params=(9, 13, 1)), TypeError, "params"),
    (dict(seed=-1), ValueError, r"seed must be an int in \[0, 2\*\*64\), got -1"),
    (dict(seed="0"), TypeError, "seed"),
])
def test_bad_minhash_lsh_parameters_are_rejected_by_name(kwargs, error, words):
    with pytest.raises(error, match=words):
        MinHashLSH(**kwargs)


def test_probability_takes_similarities_in_the_unit_interval():
    lsh = MinHashLSH()
    assert lsh.probability(np.array([[0.1, 0.9]])).shape == (1, 2)
    for bad in (1.5, -0.1, float("nan"), [0.5, 2]):
        with pytest.raises(ValueError, match=r"similarity must be in \[0, 1\]"):
            lsh.probability(bad)


# -- SimHashLSH ---------------------------------------------------------------------------

def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def clustered(rng, n_clusters=200, per_cluster=50, dim=32, spread=0.35):
    centres = rng.normal(size=(n_clusters, dim))
    return np.repeat(centres, per_cluster, axis=0) + spread * rng.normal(size=(n_clusters * per_cluster, dim))


@pytest.fixture(scope="module")
def clustered_task():
    """10,000 vectors in 200 clusters, 200 queries near data points, their true 10-NN."""
    rng = np.random.default_rng(0)
    data = clustered(rng)
    queries = data[rng.choice(len(data), 200, replace=False)] + 0.1 * rng.normal(size=(200, data.shape[1]))
    true = np.argsort(1 - unit(queries) @ unit(data).T, axis=1, kind="stable")[:, :10]
    return data, queries, true


def recall_at_10(found, true):
    return np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, true)])


def test_recall_improves_with_probes_and_gets_high(clustered_task):
    data, queries, true = clustered_task
    index = SimHashLSH(data.shape[1], bits=48, bands=4, seed=1)
    index.add(data)
    recalls = [recall_at_10(index.query(queries, k=10, probes=p)[0], true) for p in (0, 1, 2, 4, 8)]
    # The probed buckets of p probes are among those of p + 1, and re-ranking is exact,
    # so recall never drops; here it climbs from about 0.6 to above 0.95.
    assert all(later >= earlier for earlier, later in zip(recalls, recalls[1:])), recalls
    assert recalls[0] < 0.8 and recalls[-1] >= 0.95 and recalls[-1] - recalls[0] > 0.2, recalls
    many_bands = SimHashLSH(data.shape[1], bits=64, bands=8, seed=1, probes=2)
    many_bands.add(data)
    assert recall_at_10(many_bands.query(queries)[0], true) >= 0.99


def test_reranking_returns_true_cosine_distances_sorted(clustered_task):
    data, queries, _ = clustered_task
    index = SimHashLSH(data.shape[1], bits=32, bands=4, probes=4)
    index.add(data, ids=np.arange(len(data)) * 3 + 7)
    ids, distances = index.query(queries, k=10)
    assert ids.shape == distances.shape == (len(queries), 10) and ids.dtype == np.int64
    assert (ids >= 0).all()                     # every query found at least 10 candidates
    rows = (ids - 7) // 3
    exact = 1 - np.einsum("qkd,qd->qk", unit(data)[rows], unit(queries))
    assert np.allclose(distances, exact, atol=1e-6)
    assert (np.diff(distances, axis=1) >= 0).all()
    own_ids, own_distances = index.query(data[:50], k=1)     # a stored vector is its own neighbour
    assert np.array_equal(own_ids[:, 0], np.arange(50) * 3 + 7) and np.allclose(own_distances, 0, atol=1e-6)


def test_parallel_queries_equal_single_ones(clustered_task):
    data, queries, _ = clustered_task
    index = SimHashLSH(data.shape[1], bits=32, bands=4, probes=3)
    index.add(data)
    ids, distances = index.query(queries, k=7)       # 200 queries: split over threads
    for q in range(0, len(queries), 10):
        one_ids, one_distances = index.query(queries[q], k=7)
        assert np.array_equal(one_ids[0], ids[q]) and np.array_equal(one_distances[0], distances[q])


def test_bit_agreement_and_candidate_rates_follow_theory():
    """Bits agree with probability 1 - theta/pi, and pairs become candidates with the
    banded S-curve, over pairs at fixed angles and many seeds (fresh hyperplanes)."""
    rng = np.random.default_rng(7)
    dim, n_pairs, seeds = 24, 25, 40
    for cosine in (0.2, 0.6, 0.8, 0.9, 0.97):
        agree, total, found = 0, 0, 0
        for seed in range(seeds):
            index = SimHashLSH(dim, bits=16, bands=4, seed=seed)
            x = unit(rng.normal(size=(n_pairs, dim)))
            r = rng.normal(size=(n_pairs, dim))
            orthogonal = unit(r - (r * x).sum(1)[:, None] * x)
            y = cosine * x + np.sqrt(1 - cosine**2) * orthogonal
            planes = index.hyperplanes
            agree += ((x @ planes.T > 0) == (y @ planes.T > 0)).sum()
            total += x.shape[0] * planes.shape[0]
            index.add(x)
            ids, _ = index.query(y, k=n_pairs)
            found += sum(j in row for j, row in enumerate(ids))
        p_bit = 1 - np.arccos(cosine) / np.pi
        assert within_binomial(agree / total, p_bit, total, sigmas=5), cosine
        n = n_pairs * seeds
        assert within_binomial(found / n, index.probability(cosine), n), (cosine, found / n)


@pytest.mark.parametrize("width, num_probes", [(1, 1), (6, 63), (6, 10), (12, 200), (64, 300)])
def test_probes_are_distinct_bit_sets_in_increasing_score_order(width, num_probes):
    margins = np.random.default_rng(width).normal(size=width)
    masks = np.empty(num_probes, dtype=np.uint64)
    heap = (np.empty(2 * num_probes + 1), np.empty(2 * num_probes + 1, dtype=np.uint64),
            np.empty(2 * num_probes + 1, dtype=np.int64))
    written = _lsh_kernels._probe_masks(margins, num_probes, masks, *heap)
    assert written == min(num_probes, 2**width - 1)
    sets = [[bit for bit in range(width) if int(mask) >> bit & 1] for mask in masks[:written]]
    scores = [sum(margins[bit] ** 2 for bit in bits) for bits in sets]
    assert all(bits for bits in sets) and len(set(masks[:written].tolist())) == written
    assert all(a <= b + 1e-12 for a, b in zip(scores, scores[1:]))
    if width <= 12:     # they are the cheapest ones: no set left out scores lower
        every = sorted(sum(margins[bit] ** 2 for bit in range(width) if m >> bit & 1)
                       for m in range(1, 2**width))
        assert np.allclose(sorted(scores), every[:written])


def test_padding_when_candidates_run_out():
    index = SimHashLSH(4, bits=8, bands=2)
    ids, distances = index.query(np.ones(4), k=3)           # empty index
    assert ids.tolist() == [[-1, -1, -1]] and np.isinf(distances).all()
    index.add(np.array([[1.0, 0, 0, 0], [1.0, 0.1, 0, 0]]))
    ids, distances = index.query(np.array([1.0, 0.05, 0, 0]), k=5, probes=255)
    assert sorted(ids[0, :2].tolist()) == [0, 1] and ids[0, 2:].tolist() == [-1, -1, -1]
    assert np.isfinite(distances[0, :2]).all() and np.isinf(distances[0, 2:]).all()


def test_zero_vectors_are_at_distance_one():
    index = SimHashLSH(3, bits=4, bands=1, probes=15)
    index.add(np.array([[0.0, 0, 0], [1.0, 2, 3]]))
    ids, distances = index.query(np.array([[3.0, 2, 1], [0.0, 0, 0]]), k=2)
    assert distances[1].tolist() == [1.0, 1.0] and 1.0 in distances[0].tolist()


def test_ids_default_to_a_counter_and_must_be_distinct():
    index = SimHashLSH(2, bits=4, bands=2)
    assert index.add(np.eye(2)).tolist() == [0, 1]
    assert index.add(np.eye(2), ids=[10, 5]).tolist() == [10, 5]
    assert index.add(np.ones(2)).tolist() == [11] and len(index) == 5
    assert index.ids.tolist() == [0, 1, 10, 5, 11]
    for bad_ids, error, words in [([5], ValueError, "id 5 is already in the index"),
                                  ([-1], ValueError, r"ids must be in \[0, 2\*\*63\)"),
                                  ([3, 3], ValueError, "3 appears more than once"),
                                  ([1.5], TypeError, "ids must be ints"),
                                  ([1, 2, 3], ValueError, r"ids must have shape \(1,\)")]:
        vectors = np.ones((len(bad_ids) if words.startswith("3 appears") else 1, 2))
        with pytest.raises(error, match=words):
            index.add(vectors, ids=bad_ids)
    assert len(index) == 5


def test_bad_vectors_and_queries_are_refused_clearly():
    index = SimHashLSH(3)
    with pytest.raises(ValueError, match=r"vectors must have shape \(n, 3\) or \(3,\) \(dim=3\), got shape \(2, 4\)"):
        index.add(np.ones((2, 4)))
    with pytest.raises(ValueError, match="must be finite"):
        index.add(np.array([1.0, np.nan, 0]))
    with pytest.raises(TypeError, match="real numbers"):
        index.add(np.array(["a", "b", "c"]))
    with pytest.raises(ValueError, match="query vectors must have shape"):
        index.query(np.ones(4))
    with pytest.raises(ValueError, match="k must be an int >= 1, got 0"):
        index.query(np.ones(3), k=0)
    with pytest.raises(ValueError, match="probes must be an int"):
        index.query(np.ones(3), probes=-1)


def simhash_halves(seed=0):
    rng = np.random.default_rng(seed)
    data = clustered(rng, n_clusters=20, per_cluster=20, dim=8, spread=0.3)
    whole = SimHashLSH(8, bits=32, bands=4, probes=1)
    whole.add(data)
    left, right = SimHashLSH(8, bits=32, bands=4, probes=1), SimHashLSH(8, bits=32, bands=4)
    left.add(data[:200])
    right.add(data[200:], ids=np.arange(200, 400))
    return data, whole, left, right


def test_simhash_merge_and_union():
    data, whole, left, right = simhash_halves()
    union = left | right
    assert len(union) == 400 and len(left) == 200 and union.probes == 1
    expected = whole.query(data[::7], k=5)
    for combined in (union, left.merge(right)):
        got = combined.query(data[::7], k=5)
        assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    with pytest.raises(ValueError, match="id 200 .* is in both"):
        left.merge(right)
    assert len(left) == 400
    for other, words in [(SimHashLSH(8, 32, 4, seed=1), r"seed \(0 vs 1\)"),
                         (SimHashLSH(8, 32, 8), r"bands \(4 vs 8\)"),
                         (SimHashLSH(9, 32, 4), r"dim \(8 vs 9\)")]:
        with pytest.raises(ValueError, match=words):
            right | other
    with pytest.raises(TypeError, match="another SimHashLSH"):
        right.merge(data)


def test_simhash_pickle_and_other_processes():
    data, whole, _, _ = simhash_halves()
    for clone in (pickle.loads(pickle.dumps(whole)), copy.deepcopy(whole)):
        assert clone == whole
        assert all(np.array_equal(a, b) for a, b in zip(clone.query(data[:20]), whole.query(data[:20])))
    code = ("import pickle, sys, numpy as np; from mlsys_ext.sketches import SimHashLSH; "
            "index = SimHashLSH(8, bits=32, bands=4, seed=5); "
            "index.add(np.random.default_rng(1).normal(size=(100, 8)), ids=np.arange(1000, 1100)); "
            "sys.stdout.buffer.write(pickle.dumps((index, index.hyperplanes)))")
    remote, remote_planes = pickle.loads(
        subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout)
    local = SimHashLSH(8, bits=32, bands=4, seed=5)
    assert np.array_equal(local.hyperplanes, remote_planes)   # drawn from the seed alone
    local.add(data[:100])
    merged = local | remote
    vectors = np.random.default_rng(1).normal(size=(100, 8))
    assert np.array_equal(merged.query(vectors[:10], k=1)[0][:, 0], np.arange(1000, 1010))


def test_simhash_probability_and_repr():
    index = SimHashLSH(16, bits=32, bands=4)
    assert index.probability(1.0) == 1.0 and index.probability(-1.0) == 0.0
    assert index.probability(0.5) == pytest.approx(1 - (1 - (2 / 3) ** 8) ** 4)
    with pytest.raises(ValueError, match=r"cosine in \[-1, 1\]"):
        index.probability(1.5)
    assert repr(index) == "SimHashLSH(dim=16, bits=32, bands=4, seed=0, probes=0): 0 vectors"


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(dim=0), ValueError, r"dim must be an int in \[1, 2147483648\), got 0"),
    (dict(dim=2.0), TypeError, "dim"),
    (dict(bits=0), ValueError, r"bits must be an int in \[1, 65\), got 0"),
    (dict(bits=65), ValueError, "bits"),
    (dict(bands=0), ValueError, "bands must be an int"),
    (dict(bits=64, bands=5), ValueError, "bits=64 must be divisible by bands=5"),
    (dict(bits=8, bands=16), ValueError, "bits=8 must be divisible by bands=16"),
    (dict(probes=-1), ValueError, "probes must be an int"),
    (dict(probes=1.0), TypeError, "probes"),
    (dict(seed=-1), ValueError, "seed"),
])
def test_bad_simhash_parameters_are_rejected_by_name(kwargs, error, words):
    with pytest.raises(error, match=words):
        SimHashLSH(**({"dim": 8} | kwargs))
