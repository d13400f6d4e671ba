"""CountingBloomFilter: removal undoes addition; the false-positive theory is the classic filter's."""
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys_ext.sketches import BloomFilter, CountingBloomFilter

keys_strategy = st.lists(st.integers(0, 2**63 - 1), unique=True, max_size=300)


@settings(max_examples=40, deadline=None)
@given(keys_strategy, st.data())
def test_removing_some_keys_keeps_the_others(keys, data):
    c = CountingBloomFilter(500, 0.01)
    c.add_many(np.array(keys, dtype=np.uint64))
    gone = data.draw(st.integers(0, len(keys)))
    if gone:
        c.remove_many(np.array(keys[:gone], dtype=np.uint64))
    assert c.contains_many(np.array(keys[gone:], dtype=np.uint64)).all()  # no false negatives
    assert len(c) == len(keys) - gone


def test_same_positions_as_a_classic_filter():
    c, b = CountingBloomFilter(5000, 0.02, seed=4), BloomFilter(5000, 0.02, seed=4)
    keys = np.arange(5000, dtype=np.uint64)
    c.add_many(keys)
    b.add_many(keys)
    probe = np.arange(10**9, 10**9 + 50_000, dtype=np.uint64)
    assert np.array_equal(c.contains_many(probe), b.contains_many(probe))
    assert c.fpr_exact() == pytest.approx(b.fpr_exact()) and c.fpr_classic() == pytest.approx(b.fpr_classic())


def test_removing_a_key_never_added_raises_and_removes_nothing():
    c = CountingBloomFilter(1000, 0.001)
    c.add_many(["a", "b"])
    before = c.to_bytes()
    with pytest.raises(KeyError, match="never added"):
        c.remove_many(["a", "certainly absent"])
    assert c.to_bytes() == before
    c.remove("a")
    assert "a" not in c and "b" in c


def test_counters_saturate_instead_of_wrapping():
    c = CountingBloomFilter(10, 0.1)
    c.add_many(["hot"] * 300)
    c.remove_many(["hot"] * 299)
    assert "hot" in c  # a saturated counter stays up rather than wrapping to zero


def test_union_adds_counts():
    a, b = CountingBloomFilter(100, 0.01), CountingBloomFilter(100, 0.01)
    a.add_many(["x", "y"])
    b.add_many(["y", "z"])
    u = a | b
    assert all(k in u for k in "xyz") and len(u) == 4
    u.remove("y")
    assert "y" in u  # added twice in all
    with pytest.raises(ValueError, match="equal size"):
        a | CountingBloomFilter(100, 0.01, seed=1)


def test_bytes_pickle_and_corruption():
    c = CountingBloomFilter(200, 0.01, seed=9)
    c.add_many(range(100))
    assert CountingBloomFilter.from_bytes(c.to_bytes()) == c
    assert pickle.loads(pickle.dumps(c)) == c
    data = bytearray(c.to_bytes())
    data[30] ^= 1
    with pytest.raises(ValueError, match="checksum"):
        CountingBloomFilter.from_bytes(bytes(data))
    with pytest.raises(ValueError):
        CountingBloomFilter.from_bytes(c.to_bytes()[:-5])


@pytest.mark.parametrize("kwargs, name", [({"capacity": 0, "fpr": 0.1}, "capacity"),
                                          ({"capacity": 10, "fpr": 0.0}, "fpr"),
                                          ({"capacity": 10, "fpr": 0.1, "seed": "x"}, "seed")])
def test_bad_parameters_are_named(kwargs, name):
    with pytest.raises((ValueError, TypeError), match=name):
        CountingBloomFilter(**kwargs)
