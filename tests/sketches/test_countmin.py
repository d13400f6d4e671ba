"""CountMinSketch: never underestimates, meets its bound, independent rows, merging,
heavy hitters, bytes, parameters."""
import collections
import math
import pickle
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mlsys_ext.sketches import CountMinSketch, TopK

MODES = [False, True]  # conservative


def true_counts(keys, counts=None) -> collections.Counter:
    """Exact counts of ``keys`` (a flat list of Python keys), each with its count."""
    totals = collections.Counter()
    for i, key in enumerate(keys):
        totals[key] += 1 if counts is None else int(np.broadcast_to(counts, len(keys))[i])
    return totals


def zipf_stream(seed, n, a=1.1):
    return np.random.default_rng(seed).zipf(a, n).astype(np.int64)


def distinct_with_counts(keys):
    distinct, counts = np.unique(keys, return_counts=True)
    return distinct, counts


# -- never underestimates ----------------------------------------------------------

streams = st.one_of(
    st.lists(st.integers(-20, 20), max_size=300),
    st.lists(st.integers(-(2**63), 2**64 - 1), max_size=100),
    st.lists(st.text(alphabet="abcé", max_size=3), max_size=300),
    hnp.arrays(st.sampled_from([np.int8, np.int64, np.uint32]), st.integers(0, 300),
               elements=st.integers(0, 30)),
)


@settings(deadline=None, max_examples=150)
@given(keys=streams, per_key=st.booleans(), data=st.data(), eps=st.sampled_from([0.5, 0.1, 0.01]),
       delta=st.sampled_from([0.5, 0.1, 0.01]), seed=st.integers(0, 2**64 - 1), split=st.integers(0, 300))
def test_never_underestimates_and_conservative_is_never_worse(keys, per_key, data, eps, delta, seed, split):
    counts = (data.draw(st.lists(st.integers(0, 1000), min_size=len(keys), max_size=len(keys)))
              if per_key else None)
    truth = true_counts(keys, counts)
    sketches = [CountMinSketch(eps, delta, seed=seed, conservative=mode) for mode in MODES]
    for sk in sketches:
        head, scalars, tail = slice(0, split), slice(split, split + 5), slice(split + 5, None)
        sk.add_many(keys[head], None if counts is None else counts[head])
        for i in range(*scalars.indices(len(keys))):
            sk.add(keys[i], 1 if counts is None else counts[i])
        sk.add_many(keys[tail], None if counts is None else counts[tail])
        assert sk.total == sum(truth.values())
    distinct = list(truth)
    plain, conservative = (sk.estimate_many(distinct) for sk in sketches)
    expected = np.array([truth[k] for k in distinct], dtype=np.int64)
    assert (conservative >= expected).all() and (plain >= expected).all()
    assert (conservative <= plain).all() and (plain <= sketches[0].total).all()
    assert [sketches[1][k] for k in distinct[:5]] == conservative[:5].tolist()


@pytest.mark.parametrize("conservative", MODES)
def test_keys_never_added_are_estimated_from_collisions_only(conservative):
    sk = CountMinSketch(0.01, 0.01, conservative=conservative)
    assert sk.estimate_many(np.arange(1000)).tolist() == [0] * 1000 and sk["absent"] == 0
    sk.add_many(np.arange(100))
    assert (sk.estimate_many(np.arange(100)) >= 1).all()
    assert sk.estimate_many(np.arange(10**6, 10**6 + 1000)).mean() < 1  # few full collisions


def test_equal_keys_of_other_types_count_together():
    sk = CountMinSketch(0.01, 0.01)
    sk.add_many(["naïve", "naïve".encode()])
    sk.add_many(np.array([-1, 7], dtype=np.int8))
    sk.add_many([-1, np.uint8(7)])
    sk.add_many([0.0, -0.0, float("nan")])
    assert sk["naïve"] >= 2 and sk[np.int64(-1)] >= 2 and sk[7] >= 2
    assert sk[0.0] >= 2 and sk[float("nan")] >= 1 and sk.total == 9


def test_conservative_update_is_tighter_on_a_skewed_stream():
    """On a Zipf stream, batch by batch, the conservative errors are each at most the plain
    ones, and smaller on average (here about half)."""
    keys = zipf_stream(1, 200_000)
    plain, tight = CountMinSketch(0.001, 0.01, seed=3), CountMinSketch(0.001, 0.01, seed=3, conservative=True)
    for chunk in np.array_split(keys, 5):  # batches above and below the parallel threshold
        plain.add_many(chunk)
        tight.add_many(chunk)
    plain.add_many(keys[:1000])
    tight.add_many(keys[:1000])
    distinct, counts = distinct_with_counts(np.concatenate([keys, keys[:1000]]))
    plain_error = plain.estimate_many(distinct) - counts
    tight_error = tight.estimate_many(distinct) - counts
    assert (tight_error >= 0).all() and (tight_error <= plain_error).all()
    assert tight_error.mean() < 0.7 * plain_error.mean()


# -- the eps * N bound ------------------------------------------------------------------

def row_error_tails(counts, width, threshold):
    """``{g: P(E > threshold)}`` for a key of count g, E the error of one row: the sum of
    every other key's count times an independent Bernoulli(1/width) (that key landing in
    the same column). Exact, by carrying E's distribution (capped at threshold + 1) through
    all the keys, then taking one key of count g back out."""
    cap, q = threshold + 1, 1.0 / width
    dist = np.zeros(cap + 1)
    dist[0] = 1.0
    for f in counts:
        shift = min(int(f), cap)
        landed = (1 - q) * dist  # f elsewhere; else every value moves up by f
        landed[shift:cap] += q * dist[: cap - shift]
        landed[cap] += q * dist[cap - shift:].sum()
        dist = landed
    tails = {}
    for g in np.unique(counts):
        shift = min(int(g), cap)
        without = np.zeros(cap)  # dist[e] = (1-q) without[e] + q without[e - g]
        for start in range(0, cap, shift):
            stop = min(start + shift, cap)
            previous = without[start - shift: stop - shift] if start else 0.0
            without[start:stop] = (dist[start:stop] - q * previous) / (1 - q)
        tails[int(g)] = 1.0 - without.sum()
    return tails


def test_row_error_tails_match_a_direct_enumeration():
    counts, width, threshold = np.array([3, 1, 1, 2, 5]), 4, 3
    q = 1 / width
    tails = row_error_tails(counts, width, threshold)
    for g in (1, 2, 3, 5):
        others = list(counts)
        others.remove(g)
        exact = sum(math.prod(q if bit else 1 - q for bit in bits)
                    for bits in np.ndindex(*[2] * len(others))
                    if sum(f for f, bit in zip(others, bits) if bit) > threshold)
        assert tails[g] == pytest.approx(exact, rel=1e-9)


@pytest.mark.parametrize("eps, delta, a", [
    (0.05, 0.5, 1.1),   # d = 1: about 4% of keys exceed eps*N
    (0.05, 0.3, 1.1),   # d = 2: about 0.15%
    (0.02, 0.3, 1.2),   # d = 2, w = 136: about 0.3%
])
def test_the_fraction_over_the_bound_matches_independent_rows_and_stays_below_delta(eps, delta, a):
    """One Zipf stream, 20 sketches (seeds). With independent rows a key of count g exceeds
    eps*N with probability P(E > eps*N)^d (``row_error_tails``), so the fraction of distinct
    keys over the bound has that mean over the keys as its expectation. The 20 fractions are
    independent: their mean lies within 6 standard errors of it (a correct sketch fails with
    probability ~1e-5 at 19 degrees of freedom). The guarantee, at most delta of the keys,
    holds with a wide margin; the exact rate is the sharper test."""
    n = 20_000
    keys = zipf_stream(7, n, a)
    distinct, counts = distinct_with_counts(keys)
    threshold = math.floor(eps * n)
    fractions = []
    for seed in range(20):
        sk = CountMinSketch(eps, delta, seed=seed)
        sk.add_many(keys)
        errors = sk.estimate_many(distinct) - counts
        assert (errors >= 0).all() and sk.error_bound() == eps * n
        fractions.append((errors > sk.error_bound()).mean())
    tails = row_error_tails(counts, sk.width, threshold)
    expected = np.mean([tails[int(g)] ** sk.depth for g in counts])
    fractions = np.array(fractions)
    standard_error = fractions.std(ddof=1) / math.sqrt(len(fractions))
    assert abs(fractions.mean() - expected) < 6 * standard_error
    assert expected <= delta and fractions.mean() < delta


@pytest.mark.parametrize("eps, delta", [(0.001, 0.01), (0.01, 0.05), (0.1, 0.5)])
def test_at_least_1_minus_delta_of_keys_meet_the_bound_over_20_zipf_streams(eps, delta):
    """Each seed draws its own stream and its own hashes; the per-seed fractions of keys over
    eps*N are independent with mean at most delta, so their mean is checked against delta
    with 6 standard errors of slack (a correct sketch fails with probability ~1e-5)."""
    fractions = []
    for seed in range(20):
        keys = zipf_stream(100 + seed, 50_000)
        sk = CountMinSketch(eps, delta, seed=seed)
        sk.add_many(keys)
        distinct, counts = distinct_with_counts(keys)
        fractions.append(((sk.estimate_many(distinct) - counts) > eps * len(keys)).mean())
    fractions = np.array(fractions)
    assert fractions.mean() <= delta + 6 * fractions.std(ddof=1) / math.sqrt(len(fractions))


# -- independent rows ---------------------------------------------------------------------

@pytest.mark.parametrize("delta, depth", [(0.5, 1), (0.2, 2), (0.05, 3), (0.01, 5)])
def test_rows_collide_independently(delta, depth):
    """One key in a sketch; a million other keys are estimated at 1 exactly when they share
    its column in every row: with independent rows, probability w^-d. Double hashing
    (column h1 + r*h2) gives w^-2 for any d >= 2 (two keys that share h1 and h2 share every
    row), 1276 expected here instead of 46 at d = 3, far outside the 6-sigma band."""
    sk = CountMinSketch(0.1, delta, seed=5)
    assert (sk.width, sk.depth) == (28, depth)
    sk.add("the one key")
    queries = 10**6
    hits = int(sk.estimate_many(np.arange(queries)).sum())
    expected = queries / sk.width**depth
    assert expected - 6 * math.sqrt(expected) <= hits <= expected + 6 * math.sqrt(expected) + 4


# Row r's columns holding counts after adding 0 once and "a" twice, and their values.
PINNED_COLUMNS = ([[15, 18], [18, 20], [3, 21]], [[1, 2], [2, 1], [2, 1]])


def test_pinned_columns_do_not_change():
    """Serialised sketches hold counts placed by these row hashes: changing them breaks
    stored sketches (and merging with sketches built by an older version)."""
    sk = CountMinSketch(0.1, 0.05, seed=0)
    sk.add(0)
    sk.add("a", 2)
    columns = [np.flatnonzero(row).tolist() for row in sk._counters]
    values = [row[np.flatnonzero(row)].tolist() for row in sk._counters]
    assert (columns, values) == PINNED_COLUMNS


# -- parallel batches ---------------------------------------------------------------------

@pytest.mark.parametrize("conservative", MODES)
def test_one_large_batch_equals_many_small_ones(conservative, split_from):
    """Batches large enough to be split over threads lose no count to a race, and a stream
    gives the same sketch however it is cut into batches."""
    rng = np.random.default_rng(8)
    keys = zipf_stream(8, 8 * split_from)
    counts = rng.integers(0, 50, len(keys))
    one_batch = CountMinSketch(0.001, 0.001, conservative=conservative)
    one_batch.add_many(keys, counts)
    small_batches = CountMinSketch(0.001, 0.001, conservative=conservative)
    for key_chunk, count_chunk in zip(np.array_split(keys, 64), np.array_split(counts, 64)):
        small_batches.add_many(key_chunk, count_chunk)
    assert one_batch == small_batches and one_batch.total == counts.sum()
    if not conservative:  # every row holds every count exactly once
        assert (one_batch._counters.sum(axis=1) == counts.sum()).all()
    queries = np.concatenate([keys, np.arange(10**12, 10**12 + len(keys))])
    batched = one_batch.estimate_many(queries)
    assert np.array_equal(batched, np.concatenate([small_batches.estimate_many(c)
                                                   for c in np.array_split(queries, 64)]))


def test_counts_broadcast_to_the_keys_and_arrays_keep_their_shape():
    keys = np.arange(6).reshape(2, 3)
    broadcast, explicit = CountMinSketch(0.01, 0.01), CountMinSketch(0.01, 0.01)
    broadcast.add_many(keys, counts=[1, 2, 3])
    explicit.add_many(keys.ravel(), counts=np.array([1, 2, 3, 1, 2, 3], dtype=np.uint8))
    assert broadcast == explicit and broadcast.total == 12
    scalar = CountMinSketch(0.01, 0.01)
    scalar.add_many(keys, counts=np.int64(4))
    assert scalar.total == 24 and scalar.estimate_many(keys).shape == (2, 3)
    assert (scalar.estimate_many(keys) >= 4).all()
    assert scalar.estimate_many((1, 2)).shape == (2,)
    empty = CountMinSketch(0.01, 0.01)
    empty.add_many([], counts=[])
    empty.add_many(np.array([], dtype=np.int64), counts=5)
    assert empty.total == 0 and empty.estimate_many([]).shape == (0,)


# -- merging ------------------------------------------------------------------------------

def test_merge_equals_the_sketch_of_the_concatenated_stream():
    first, second = zipf_stream(9, 30_000), zipf_stream(10, 40_000)
    a, b = CountMinSketch(0.005, 0.01, seed=4), CountMinSketch(0.005, 0.01, seed=4)
    a.add_many(first)
    b.add_many(second, counts=3)
    b.add("word", 7)
    direct = CountMinSketch(0.005, 0.01, seed=4)
    direct.add_many(np.concatenate([first, second]), counts=np.repeat([1, 3], [len(first), len(second)]))
    direct.add("word", 7)
    merged = a | b
    assert merged == direct == b | a and merged.total == 30_000 + 120_000 + 7
    assert a.total == 30_000 and a != merged  # operands of | are unchanged
    merged |= a
    assert merged.total == 180_007
    a.merge(b)  # in place
    assert a == direct


def test_merged_conservative_sketches_are_a_plain_sum_and_still_upper_bounds():
    first, second = zipf_stream(11, 30_000), zipf_stream(12, 30_000)
    parts = []
    for mode in MODES:
        a, b = (CountMinSketch(0.005, 0.01, conservative=mode) for _ in range(2))
        a.add_many(first)
        b.add_many(second)
        parts.append((a, b, a | b))
    (_, _, plain), (a, b, tight) = parts
    assert np.array_equal(tight._counters, a._counters + b._counters) and tight.conservative
    distinct, counts = distinct_with_counts(np.concatenate([first, second]))
    estimates = tight.estimate_many(distinct)
    assert (estimates >= counts).all() and (estimates <= plain.estimate_many(distinct)).all()


@pytest.mark.parametrize("other, words", [
    (CountMinSketch(0.01, 0.01, seed=1), "seed"),
    (CountMinSketch(0.02, 0.01), "width"),
    (CountMinSketch(0.01, 0.001), "depth"),
    (CountMinSketch(0.01, 0.01, conservative=True), "conservative"),
])
def test_only_sketches_of_one_shape_and_seed_merge(other, words):
    with pytest.raises(ValueError, match=f"cannot merge sketches that differ in {words}"):
        CountMinSketch(0.01, 0.01).merge(other)


def test_merging_with_something_else_is_a_type_error():
    sk = CountMinSketch(0.01, 0.01)
    with pytest.raises(TypeError):
        sk | 1
    with pytest.raises(TypeError, match="another CountMinSketch"):
        sk.merge([1, 2])


def test_equal_parameters_that_round_to_one_shape_merge():
    a, b = CountMinSketch(0.01, 0.01), CountMinSketch(0.00999999, 0.0099)
    assert (a.width, a.depth) == (b.width, b.depth)
    assert (a | b).eps == 0.01


# -- heavy hitters -------------------------------------------------------------------------

def test_heavy_hitters_among_candidates():
    keys = zipf_stream(13, 100_000)
    sk = CountMinSketch(0.001, 0.01)
    sk.add_many(keys)
    distinct, counts = distinct_with_counts(keys)
    phi = 0.01
    found = sk.heavy_hitters(keys, phi)  # candidates with repeats: each returned once
    assert isinstance(found, np.ndarray) and len(set(found.tolist())) == len(found)
    assert set(distinct[counts >= phi * len(keys)]) <= set(found.tolist())
    estimates = sk.estimate_many(found)
    assert (estimates >= phi * len(keys)).all() and (np.diff(estimates) <= 0).all()
    # With probability 1 - delta each, the true counts are at least (phi - eps) N.
    true_of = dict(zip(distinct.tolist(), counts.tolist()))
    assert all(true_of[k] >= (phi - sk.eps) * len(keys) for k in found.tolist())
    as_list = sk.heavy_hitters(distinct.tolist(), phi)
    assert isinstance(as_list, list) and sorted(as_list) == sorted(found.tolist())
    assert sk.heavy_hitters(np.array([10**15]), phi).size == 0


def test_heavy_hitters_count_equal_keys_once_and_an_empty_sketch_has_none():
    sk = CountMinSketch(0.01, 0.01)
    assert sk.heavy_hitters(["a", "b"], 0.5) == []
    sk.add_many(["a"] * 8 + ["b"] * 2)
    assert sk.heavy_hitters(["b", "a", b"a", "c"], 0.1) == ["a", "b"]
    assert sk.heavy_hitters(("b", "a"), 0.5) == ["a"]


def test_top_k_keeps_the_heavy_hitters_of_a_stream():
    keys = zipf_stream(14, 200_000)
    top = TopK(CountMinSketch(0.001, 0.01, conservative=True), k=30)
    for chunk in np.array_split(keys, 40):
        top.add_many(chunk)
    top.add("a word", 5)
    top.add_many(["a word", "another"], counts=[3, 1])
    distinct, counts = distinct_with_counts(keys)
    phi = 0.005
    found = top.heavy_hitters(phi)
    assert len(found) < top.k  # so every key with a true count >= phi*N is among them
    assert set(distinct[counts >= phi * top.sketch.total].tolist()) <= set(found)
    assert set(found) <= set(top.sketch.heavy_hitters(distinct, phi).tolist())
    kept, estimates = top.candidates()
    assert len(kept) == 30 == len(set(kept)) and (np.diff(estimates) <= 0).all()
    assert all(type(k) is int for k in kept)  # Python keys, not numpy scalars
    assert top.sketch.total == 200_009 and top.sketch["a word"] >= 8


def test_top_k_ranks_by_estimate_and_keeps_the_older_key_on_a_tie():
    top = TopK(CountMinSketch(0.0001, 0.001), k=2)
    top.add_many(["x", "y", "y", "z"])
    assert top.candidates()[0] == ["y", "x"]  # x and z tie: x came first
    top.add_many(["z", "z"])
    keys, estimates = top.candidates()
    assert keys == ["z", "y"] and estimates.tolist() == [3, 2]
    assert top.heavy_hitters(0.4) == ["z"] and "TopK(k=2, 2 keys kept)" in repr(top)
    copied = pickle.loads(pickle.dumps(top))
    assert copied.candidates()[0] == ["z", "y"] and copied.sketch == top.sketch


# -- bytes and pickle ------------------------------------------------------------------------

def filled(conservative=False, seed=11):
    sk = CountMinSketch(0.3, 0.2, seed=seed, conservative=conservative)  # 2 x 10 counters
    sk.add_many(np.arange(700) % 37)
    sk.add_many(["x", b"y"], counts=[5, 6])
    return sk


@pytest.mark.parametrize("conservative", MODES)
def test_bytes_round_trip(conservative):
    sk = filled(conservative)
    data = sk.to_bytes()
    back = CountMinSketch.from_bytes(data)
    assert back == sk and back.to_bytes() == data
    assert (back.eps, back.delta, back.seed, back.conservative, back.total) == (0.3, 0.2, 11, conservative, 711)
    assert back["x"] == sk["x"] and back.width == 10 and back.depth == 2
    assert CountMinSketch.from_bytes(bytearray(data)) == sk == CountMinSketch.from_bytes(memoryview(data))
    back.add("x")  # the copy owns writable counters
    assert back != sk


def test_other_data_are_rejected():
    data = filled().to_bytes()
    with pytest.raises(ValueError, match="not a serialised CountMinSketch"):
        CountMinSketch.from_bytes(b"MLSXBLOM" + data[8:])
    with pytest.raises(TypeError, match="needs bytes"):
        CountMinSketch.from_bytes(data.hex())


HEADER = struct.Struct("<8sHBQQQddQ")  # magic, version, conservative, w, d, seed, eps, delta, total


def rewritten(data: bytes, counters=None, **fields) -> bytes:
    """``data`` with some header fields (or the counters) replaced, and a valid checksum."""
    names = ["magic", "version", "conservative", "width", "depth", "seed", "eps", "delta", "total"]
    values = dict(zip(names, HEADER.unpack_from(data))) | fields
    payload = data[HEADER.size:-4] if counters is None else np.asarray(counters, dtype="<i8").tobytes()
    body = HEADER.pack(*(values[name] for name in names)) + payload
    return body + struct.pack("<I", zlib.crc32(body))


def test_versions_are_checked():
    data = filled().to_bytes()
    assert CountMinSketch.from_bytes(rewritten(data, version=1)) == filled()
    with pytest.raises(ValueError, match="version 2 is newer"):
        CountMinSketch.from_bytes(rewritten(data, version=2))
    with pytest.raises(ValueError, match="unknown format version 0"):
        CountMinSketch.from_bytes(rewritten(data, version=0))


@pytest.mark.parametrize("change, words", [
    (dict(conservative=2), "corrupt header"),
    (dict(eps=0.31), "corrupt header"),             # width ceil(e/0.31) = 9, not 10
    (dict(delta=1.5), "corrupt header"),
    (dict(eps=float("nan")), "corrupt header"),
    (dict(total=712), "corrupt counters"),          # rows of a plain sketch sum to the total
    (dict(total=2**63), "corrupt header"),
    (dict(width=11), "header describes 2 x 11 counters"),
])
def test_inconsistent_fields_with_a_valid_checksum_are_rejected(change, words):
    with pytest.raises(ValueError, match=words):
        CountMinSketch.from_bytes(rewritten(filled().to_bytes(), **change))


def test_inconsistent_counters_with_a_valid_checksum_are_rejected():
    sk = filled(conservative=True)
    counters = sk._counters.copy()
    counters[0, 0] = -1
    with pytest.raises(ValueError, match="corrupt counters"):
        CountMinSketch.from_bytes(rewritten(sk.to_bytes(), counters))
    counters[0, 0] = sk.total + 1
    with pytest.raises(ValueError, match="corrupt counters"):
        CountMinSketch.from_bytes(rewritten(sk.to_bytes(), counters))


# -- parameters and misuse -----------------------------------------------------------------

@pytest.mark.parametrize("eps, delta, width, depth", [
    (0.001, 0.01, 2719, 5), (0.5, 0.5, 6, 1), (0.1, 0.05, 28, 3), (0.01, 0.99, 272, 1), (0.9, 1e-9, 4, 21),
])
def test_sizing_follows_the_formulas(eps, delta, width, depth):
    sk = CountMinSketch(eps, delta)
    assert (sk.width, sk.depth) == (width, depth) == (math.ceil(math.e / eps), math.ceil(math.log(1 / delta)))
    assert sk.memory_bytes == 8 * width * depth and sk.error_bound() == 0.0
    sk.add_many(np.arange(1000))
    assert sk.error_bound() == eps * 1000 and sk.total == 1000


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(eps=0), ValueError, r"eps must be a real number in the open interval \(0, 1\), got 0.0"),
    (dict(eps=1.0), ValueError, "eps"),
    (dict(eps=-0.1), ValueError, "eps"),
    (dict(eps=float("nan")), ValueError, "eps"),
    (dict(eps=float("inf")), ValueError, "eps"),
    (dict(eps="0.01"), TypeError, "eps must be a real number"),
    (dict(eps=True), TypeError, "eps"),
    (dict(eps=None), TypeError, "eps"),
    (dict(delta=0.0), ValueError, r"delta must be a real number in the open interval \(0, 1\), got 0.0"),
    (dict(delta=1), ValueError, "delta"),
    (dict(delta=2.0), ValueError, "delta"),
    (dict(delta="small"), TypeError, "delta"),
    (dict(seed=-1), ValueError, r"seed must be an int in \[0, 2\*\*64\), got -1"),
    (dict(seed=2**64), ValueError, "seed"),
    (dict(seed=1.0), TypeError, "seed"),
    (dict(seed="1"), TypeError, "seed"),
    (dict(conservative=1), TypeError, "conservative must be True or False, got 1"),
    (dict(conservative="yes"), TypeError, "conservative"),
    (dict(conservative=None), TypeError, "conservative"),
    (dict(eps=1e-12, delta=1e-9), ValueError, "eps=1e-12 and delta=1e-09 need 21 x .* counters"),
])
def test_bad_parameters_are_rejected_by_name(kwargs, error, words):
    args = dict(eps=0.01, delta=0.01) | kwargs
    with pytest.raises(error, match=words):
        CountMinSketch(**args)


def test_numpy_scalars_are_good_parameters():
    sk = CountMinSketch(np.float32(0.01), np.float64(0.01), seed=np.uint64(2**63), conservative=np.bool_(True))
    assert sk.width == 272 and sk.seed == 2**63 and sk.conservative
    sk.add_many(np.arange(10))
    assert CountMinSketch.from_bytes(sk.to_bytes()) == sk


@pytest.mark.parametrize("counts, error, words", [
    ([1, -2, 3], ValueError, r"counts must be integers >= 0, got -2 at counts\[1\]"),
    (-1, ValueError, "counts must be integers >= 0, got -1"),
    ([1.0, 2.0, 3.0], TypeError, "counts must be integers >= 0, got an array of float64"),
    (2.5, TypeError, r"counts must be integers >= 0, got 2.5 \(float\)"),
    ([True, False, True], TypeError, "array of bool"),
    ("3", TypeError, "counts"),
    ([1, 2], ValueError, r"counts of shape \(2,\) do not broadcast to the keys' shape \(3,\)"),
    (np.ones((2, 3), dtype=np.int64), ValueError, "do not broadcast"),
    (np.array([2**63, 1, 1], dtype=np.uint64), ValueError, "counts must be integers < 2\\*\\*63"),
])
def test_bad_counts_are_rejected_and_change_nothing(counts, error, words):
    sk = filled()
    with pytest.raises(error, match=words):
        sk.add_many([1, 2, 3], counts)
    assert sk == filled()


def test_refused_adds_change_nothing():
    sk = filled()
    with pytest.raises(TypeError, match="cannot hash"):
        sk.add_many([1, None])
    with pytest.raises(ValueError, match=r"count must be an int in \[0, 2\*\*63\), got -1"):
        sk.add("x", -1)
    with pytest.raises(TypeError, match="count must be an int"):
        sk.add("x", 1.5)
    with pytest.raises(ValueError, match=r"beyond the 2\*\*63 - 1"):
        sk.add("x", 2**63 - 1)
    with pytest.raises(ValueError, match=r"beyond the 2\*\*63 - 1"):
        sk.add_many(["x", "y"], counts=np.array([2**62, 2**62], dtype=np.int64))
    assert sk == filled()


def test_single_and_batch_operations_are_not_mixed_up():
    sk = CountMinSketch(0.01, 0.01)
    with pytest.raises(TypeError, match="use add_many"):
        sk.add([1, 2])
    with pytest.raises(TypeError, match="use add"):
        sk.add_many(5)
    with pytest.raises(TypeError, match="use add"):
        sk.add_many("abc")
    with pytest.raises(TypeError, match="use estimate_many"):
        sk[[1, 2]]
    with pytest.raises(TypeError, match="use estimate"):
        sk.estimate_many(5)
    with pytest.raises(TypeError, match="use estimate"):
        sk.heavy_hitters("abc", 0.1)


@pytest.mark.parametrize("phi, error", [(0, ValueError), (1.0, ValueError), (-0.5, ValueError),
                                        (float("nan"), ValueError), ("0.1", TypeError)])
def test_bad_phi_is_rejected(phi, error):
    with pytest.raises(error, match="phi must be a real number in the open interval"):
        CountMinSketch(0.01, 0.01).heavy_hitters([1], phi)
    with pytest.raises(error, match="phi"):
        TopK(CountMinSketch(0.01, 0.01), k=3).heavy_hitters(phi)


def test_bad_top_k_arguments_are_rejected():
    with pytest.raises(ValueError, match="k must be an int >= 1, got 0"):
        TopK(CountMinSketch(0.01, 0.01), k=0)
    with pytest.raises(TypeError, match="k must be an int"):
        TopK(CountMinSketch(0.01, 0.01), k=2.0)
    with pytest.raises(TypeError, match="sketch must be a CountMinSketch, got dict"):
        TopK({}, k=3)


def test_repr_names_the_parameters_and_shape():
    text = repr(filled(conservative=True))
    assert text.startswith("CountMinSketch(eps=0.3, delta=0.2, seed=11, conservative=True)")
    assert "2 x 10 int64 counters" in text and "total 711" in text
