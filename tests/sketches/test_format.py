"""What every serialisable sketch shares: pickling and copying give independent twins,
and every corrupted or truncated byte string is rejected with a ValueError."""
import copy
import pickle

import numpy as np
import pytest

from mlsys_ext.sketches import BloomFilter, CountingBloomFilter, CountMinSketch, ScalableBloomFilter


def bloom(kind):
    bf = BloomFilter(1000, 0.02, kind=kind, seed=11)
    bf.add_many(np.arange(700))
    bf.add_many(["x", b"y"])
    return bf


def countmin(conservative):
    sk = CountMinSketch(0.3, 0.2, seed=11, conservative=conservative)  # 2 x 10 counters
    sk.add_many(np.arange(700) % 37)
    sk.add_many(["x", b"y"], counts=[5, 6])
    return sk


def counting():
    c = CountingBloomFilter(40, 0.05, seed=11)
    c.add_many(np.arange(30))
    return c


def scalable():
    s = ScalableBloomFilter(20, 0.05, seed=11)
    s.add_many(np.arange(70))
    return s


SKETCHES = {
    "bloom classic": lambda: bloom("classic"),
    "bloom blocked": lambda: bloom("blocked"),
    "count-min": lambda: countmin(False),
    "count-min conservative": lambda: countmin(True),
    "counting bloom": counting,
    "scalable bloom": scalable,
}
parametrize = pytest.mark.parametrize("make", SKETCHES.values(), ids=SKETCHES.keys())


@parametrize
def test_pickle_and_copy_give_independent_twins(make):
    original = make()
    for clone in (pickle.loads(pickle.dumps(original)), copy.deepcopy(original), copy.copy(original)):
        assert clone == original and clone is not original
        clone.add_many(np.arange(10**6, 10**6 + 500))
        assert clone != original and original == make()  # nothing is shared


@parametrize
def test_every_flipped_byte_is_rejected(make):
    sketch = make()
    data = sketch.to_bytes()
    assert type(sketch).from_bytes(data) == sketch
    for position in range(len(data)):
        corrupt = bytearray(data)
        corrupt[position] ^= 0x40
        with pytest.raises(ValueError):
            type(sketch).from_bytes(bytes(corrupt))


@parametrize
def test_a_flipped_payload_byte_fails_the_checksum(make):
    sketch = make()
    data = bytearray(sketch.to_bytes())
    data[len(data) - 8] ^= 1  # in the payload, just before the checksum
    with pytest.raises(ValueError, match="checksum"):
        type(sketch).from_bytes(bytes(data))


@parametrize
@pytest.mark.parametrize("length", [0, 10, 62, 100, -4, -1])
def test_truncated_bytes_are_rejected(make, length):
    sketch = make()
    with pytest.raises(ValueError, match="truncated"):
        type(sketch).from_bytes(sketch.to_bytes()[:length])
