"""MinHash: the exact permutation arithmetic, Jaccard estimates within binomial error,
signatures independent of order, type and process, clear refusals."""
import copy
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys_ext.sketches import MinHash, _minhash_kernels, hash64

P61 = 2**61 - 1


def reference_signature(tokens, num_perm=128, seed=0):
    """Slot i: min over the tokens of (a_i (h mod p) + b_i) mod p, in Python integers."""
    a, b = MinHash(num_perm, seed).coefficients
    if len(tokens) == 0:
        return [MinHash.EMPTY] * num_perm
    hashes = [int(h) % P61 for h in hash64(list(tokens), seed=seed)]
    return [min((int(ai) * h + int(bi)) % P61 for h in hashes) for ai, bi in zip(a, b)]


def sets_with_jaccard(rng, jaccard, size, n_pairs):
    """Pairs of random int sets of ``size`` tokens each with Jaccard similarity exactly
    ``jaccard`` (|A ∩ B| = c, |A ∪ B| = 2 size - c, so c = 2 size J / (1 + J))."""
    shared = round(2 * size * jaccard / (1 + jaccard))
    exact = shared / (2 * size - shared)
    tokens = rng.integers(0, 2**62, (n_pairs, 2 * size - shared))  # distinct but for ~2**-40
    a = [row[:size] for row in tokens]
    b = [np.concatenate([row[:shared], row[size:]]) for row in tokens]
    return a, b, exact


# -- the arithmetic -------------------------------------------------------------------

def test_kernel_computes_the_permutations_exactly_at_the_extremes():
    """The 32-bit split products and the folds modulo 2**61 - 1, on hashes and
    coefficients at the edges of their ranges."""
    edge_hashes = [0, 1, P61 - 1, P61, P61 + 1, 2**61, 2 * P61, 2**62 - 1, 2**63, 2**64 - 2, 2**64 - 1,
                   0xFFFFFFFF, 2**32, 2**32 + 1, 0x1FFFFFFFFFFFFFFF, 0xFFFFFFFF00000000]
    edge_coefficients = [1, 2, 0xFFFFFFFF, 2**32, 2**60, P61 - 1, P61 - 2, 0x1FFFFFFF00000001]
    a = np.array(edge_coefficients, dtype=np.uint64)
    b = np.array(edge_coefficients[::-1], dtype=np.uint64) - np.uint64(1)
    for h in edge_hashes:
        out = np.empty((1, len(a)), dtype=np.uint64)
        _minhash_kernels.signatures(np.array([h], dtype=np.uint64), np.array([0, 1]), a, b, out)
        expected = [(int(ai) * (h % P61) + int(bi)) % P61 for ai, bi in zip(a, b)]
        assert out[0].tolist() == expected, hex(h)


token_sets = st.one_of(
    st.lists(st.integers(-(2**63), 2**64 - 1), max_size=40),
    st.lists(st.text(max_size=12), max_size=40),
    st.lists(st.binary(max_size=12), max_size=40),
    st.lists(st.one_of(st.text(max_size=5), st.binary(max_size=5)), max_size=40),
    st.lists(st.floats(allow_nan=False), max_size=40),
)


@settings(deadline=None, max_examples=60)
@given(sets=st.lists(token_sets, min_size=1, max_size=5), num_perm=st.integers(1, 70),
       seed=st.integers(0, 2**64 - 1))
def test_signatures_match_the_definition(sets, num_perm, seed):
    mh = MinHash(num_perm, seed)
    got = mh.signatures(sets)
    assert got.shape == (len(sets), num_perm) and got.dtype == np.uint64
    for row, tokens in zip(got, sets):
        assert row.tolist() == reference_signature(tokens, num_perm, seed)


def test_non_ascii_and_surrogate_strings_hash_as_their_utf8_bytes():
    tokens = ["naïve", "☃", "日本語", "\ud83d", "\ude00", "a\ud83d\ude00b", "", "plain"]
    mh = MinHash(16)
    sig = mh.signature(tokens)
    assert sig.tolist() == reference_signature(tokens, 16)
    assert np.array_equal(sig, mh.signature([t.encode("utf-8", "surrogatepass") for t in tokens]))


def test_parallel_batches_equal_serial_ones(split_from):
    """A batch large enough to be split over threads (by tokens, over uneven sets)."""
    rng = np.random.default_rng(5)
    sizes = rng.integers(0, 300, 400)
    sizes[:50] = 0
    sets = [rng.integers(0, 2**63, n) for n in sizes]
    mh = MinHash(64)
    assert sum(sizes) * 64 // 8 >= split_from
    together = mh.signatures(sets)
    assert np.array_equal(together, np.vstack([mh.signatures(sets[i:i + 1]) for i in range(len(sets))]))
    assert (together[sizes == 0] == MinHash.EMPTY).all()
    assert (together[sizes > 0] < P61).all()


# -- what a signature depends on --------------------------------------------------------

def test_signatures_ignore_order_duplicates_and_container():
    rng = np.random.default_rng(0)
    tokens = rng.integers(-(2**40), 2**40, 300)
    shuffled = rng.permutation(tokens)
    mh = MinHash(128, seed=3)
    expected = mh.signature(tokens)
    for same in (shuffled, tokens.tolist(), set(tokens.tolist()), frozenset(tokens.tolist()),
                 tuple(shuffled.tolist()), np.concatenate([tokens, tokens[:50]]),
                 tokens.astype(np.int64), [np.int64(t) for t in shuffled]):
        assert np.array_equal(mh.signature(same), expected)
    words = [f"w{i}" for i in range(200)]
    assert np.array_equal(mh.signature(words), mh.signature(set(reversed(words))))
    assert np.array_equal(mh.signature(words), mh.signature(np.array(words)))
    assert np.array_equal(mh.signature(words), mh.signature([w.encode() for w in words]))


def test_integers_hash_by_value_across_widths_and_sets_of_one_call_mix_freely():
    mh = MinHash(32)
    small = np.array([-1, 0, 5, 100], dtype=np.int8)
    sigs = mh.signatures([small, small.astype(np.uint64), [-1, 0, 5, 100], small.astype(np.int32),
                          np.array([0.5, 1.5]), [0.5, np.float32(1.5)]])
    assert np.array_equal(sigs[0], sigs[2]) and np.array_equal(sigs[0], sigs[3])
    assert np.array_equal(sigs[0], sigs[1])      # -1 and 2**64 - 1 are one 64-bit value
    assert np.array_equal(sigs[4], sigs[5])
    assert not np.array_equal(sigs[0], mh.signature([1.0, 0.0, 5.0, 100.0]))  # 1 and 1.0 differ


def test_a_two_dimensional_array_is_one_set_per_row():
    rng = np.random.default_rng(1)
    rows = rng.integers(0, 1000, (20, 30))
    mh = MinHash(64)
    assert np.array_equal(mh.signatures(rows), mh.signatures(list(rows)))
    assert np.array_equal(mh.signatures(np.empty((3, 0), dtype=np.int64)),
                          np.full((3, 64), MinHash.EMPTY, dtype=np.uint64))


def test_empty_sets_give_the_sentinel():
    mh = MinHash(16)
    sigs = mh.signatures([[], set(), np.array([], dtype=np.int64), [1, 2]])
    assert (sigs[:3] == np.uint64(2**64 - 1)).all() and MinHash.EMPTY == 2**64 - 1
    assert mh.jaccard(sigs[0], sigs[1]) == 1.0 and mh.jaccard(sigs[0], sigs[3]) == 0.0
    assert mh.signatures([]).shape == (0, 16)


def test_signatures_are_stable_across_processes():
    """A fresh interpreter, with another str-hash salt, builds the same signatures."""
    sets = [["the", "quick", "brown", "fox"], list(range(50)), ["naïve", "☃"], []]
    code = ("import json, sys; from mlsys_ext.sketches import MinHash; "
            "sets = json.loads(sys.argv[1]); "
            "print(json.dumps([MinHash(64, seed=s).signatures(sets).tolist() for s in (0, 99)]))")
    env = {**os.environ, "PYTHONHASHSEED": "4321"}
    out = subprocess.run([sys.executable, "-c", code, json.dumps(sets)], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [MinHash(64, seed=s).signatures(sets).tolist() for s in (0, 99)]


def test_pinned_values_do_not_change():
    """Signatures stored or indexed elsewhere must keep matching new ones."""
    a, b = MinHash(2, seed=0).coefficients
    assert a.tolist() == [1142744198843281158, 1306544546907720347]
    assert b.tolist() == [282435024611235600, 1279682591994017925]
    assert MinHash(4, seed=7).signature(["a", "b", "c"]).tolist() == [
        59262394886125848, 213275144266069678, 330466344462271966, 787533703500298021]
    assert MinHash(4, seed=7).signature([1, 2, 3]).tolist() == [
        1058628089918563938, 495519084706843570, 1481921763806814652, 244902511935049248]


def test_seeds_give_different_permutations():
    sets = [list(range(100))]
    assert not np.any(MinHash(128, seed=0).signatures(sets) == MinHash(128, seed=1).signatures(sets))


# -- Jaccard estimates ---------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("jaccard", [0.1, 0.5, 0.8, 0.95])
def test_jaccard_estimates_are_binomial_around_the_truth(seed, jaccard):
    """Over 300 random pairs, each estimate is a Binomial(num_perm, J) proportion: the
    mean is within 4 standard errors, the spread matches the binomial variance (the
    ratio is a chi-square with 299 degrees of freedom over 299: 5 sigma is about
    -40%/+45%), and no pair is more than 5.5 sigma away."""
    num_perm, n_pairs = 128, 300
    rng = np.random.default_rng(1000 * seed + int(100 * jaccard))
    a, b, exact = sets_with_jaccard(rng, jaccard, 150, n_pairs)
    mh = MinHash(num_perm, seed=seed)
    estimates = mh.jaccard(mh.signatures(a), mh.signatures(b))
    assert estimates.shape == (n_pairs,)
    variance = exact * (1 - exact) / num_perm
    assert abs(estimates.mean() - exact) < 4 * np.sqrt(variance / n_pairs)
    assert 0.6 < estimates.var(ddof=1) / variance < 1.45
    assert np.abs(estimates - exact).max() < 5.5 * np.sqrt(variance)


def test_disjoint_and_identical_sets():
    mh = MinHash(256)
    sigs = mh.signatures([range(0, 100), range(100, 200), list(range(100))[::-1]])
    assert mh.jaccard(sigs[0], sigs[2]) == 1.0
    assert mh.jaccard(sigs[0], sigs[1]) < 0.03   # only hash collisions mod 2**61 - 1 could match


def test_jaccard_broadcasts_one_against_many():
    rng = np.random.default_rng(2)
    mh = MinHash(64)
    sigs = mh.signatures([rng.integers(0, 50, 40) for _ in range(10)])
    one_vs_many = mh.jaccard(sigs[0], sigs)
    assert one_vs_many.shape == (10,) and one_vs_many[0] == 1.0
    assert np.allclose(one_vs_many, [mh.jaccard(sigs[0], s) for s in sigs])
    table = mh.jaccard(sigs[:, None, :], sigs[None, :, :])
    assert table.shape == (10, 10) and np.allclose(table, table.T)
    assert isinstance(mh.jaccard(sigs[0], sigs[1]), float)


# -- objects and refusals ------------------------------------------------------------------

def test_pickle_copy_equality_and_repr():
    mh = MinHash(32, seed=5)
    for clone in (pickle.loads(pickle.dumps(mh)), copy.deepcopy(mh)):
        assert clone == mh and hash(clone) == hash(mh)
        assert np.array_equal(clone.signature([1, 2, 3]), mh.signature([1, 2, 3]))
    assert MinHash(32, seed=6) != mh and MinHash(33, seed=5) != mh
    assert repr(mh) == "MinHash(num_perm=32, seed=5)"
    assert MinHash().num_perm == 128 and MinHash().seed == 0


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(num_perm=0), ValueError, r"num_perm must be an int in \[1, 1048576\), got 0"),
    (dict(num_perm=-5), ValueError, "num_perm"),
    (dict(num_perm=2**20), ValueError, "num_perm"),
    (dict(num_perm=1.5), TypeError, "num_perm"),
    (dict(num_perm="128"), TypeError, "num_perm"),
    (dict(num_perm=True), TypeError, "num_perm"),
    (dict(seed=-1), ValueError, r"seed must be an int in \[0, 2\*\*64\), got -1"),
    (dict(seed=2**64), ValueError, "seed"),
    (dict(seed=0.5), TypeError, "seed"),
    (dict(seed=None), TypeError, "seed"),
])
def test_bad_parameters_are_rejected_by_name(kwargs, error, words):
    with pytest.raises(error, match=words):
        MinHash(**kwargs)


def test_numpy_scalars_are_good_parameters():
    mh = MinHash(np.int64(16), seed=np.uint64(2**63))
    assert np.array_equal(mh.signature([1, 2]), MinHash(16, seed=2**63).signature([1, 2]))


def test_bad_sets_and_signatures_are_refused_clearly():
    mh = MinHash(8)
    with pytest.raises(TypeError, match="character by character"):
        mh.signatures(["some text", "more text"])
    with pytest.raises(TypeError, match="character by character"):
        mh.signature("some text")
    with pytest.raises(TypeError, match="use signature for one set"):
        mh.signatures({1, 2, 3})
    with pytest.raises(TypeError, match="got dict"):
        mh.signatures([{1: 2}])
    with pytest.raises(TypeError, match="got generator"):
        mh.signatures([(x for x in range(3))])
    with pytest.raises(ValueError, match="must be 1-D"):
        mh.signatures([np.zeros((2, 2))])
    with pytest.raises(TypeError, match="cannot hash"):
        mh.signatures([[None, 1]])
    with pytest.raises(TypeError, match="keys mix"):
        mh.signatures([[1, 2], [3, "a"]])
    assert np.array_equal(mh.signatures([[1, 2], ["a"]]), mh.signatures([[1, 2]]).tolist() + [mh.signature(["a"])])
    sig = mh.signature([1])
    with pytest.raises(ValueError, match="sig_b has 9 slots, but this MinHash has num_perm=8"):
        mh.jaccard(sig, np.zeros(9, dtype=np.uint64))
    with pytest.raises(TypeError, match="sig_a must be a signature"):
        mh.jaccard(np.zeros(8), sig)
    with pytest.raises(ValueError, match="do not broadcast"):
        mh.jaccard(np.zeros((3, 8), np.uint64), np.zeros((2, 8), np.uint64))
