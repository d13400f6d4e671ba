"""What every sketch shares: pickling and copying give independent twins; every
corrupted, truncated or hand-edited byte string is rejected with a ValueError; and
``merge`` changes the receiver while ``|`` makes a new sketch."""
import copy
import pickle
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys_ext.sketches import (BloomFilter, CountingBloomFilter, CountMinSketch, MinHash, MinHashLSH,
                                ScalableBloomFilter, SimHashLSH)


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


# -- header fields out of range, with the checksum recomputed -----------------------------

BAD_RATES = st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0), st.just(float("nan")))
BAD_COUNTS = st.integers(2**63, 2**64 - 1)
BLOOM_FIELDS = ("<8sHBQIQQdQ", ["magic", "version", "kind", "num_bits", "num_hashes", "seed", "capacity", "fpr", "count"],
                {"kind": st.integers(2, 255), "num_bits": st.one_of(st.just(0), st.integers(2**48, 2**64 - 1)),
                 "num_hashes": st.one_of(st.just(0), st.integers(64, 2**32 - 1)), "capacity": st.just(0),
                 "fpr": BAD_RATES, "count": BAD_COUNTS})
# The layout of each format, written out here rather than taken from the code under
# test, and for each field the values the constructors never produce.
HEADERS = {
    "bloom classic": BLOOM_FIELDS,
    "bloom blocked": BLOOM_FIELDS,
    "count-min": ("<8sHBQQQddQ", ["magic", "version", "conservative", "width", "depth", "seed", "eps", "delta", "total"],
                  {"conservative": st.integers(2, 255), "width": st.just(0), "depth": st.just(0), "eps": BAD_RATES,
                   "delta": BAD_RATES, "total": BAD_COUNTS}),
    "counting bloom": ("<8sHQIQQdQ", ["magic", "version", "num_counters", "num_hashes", "seed", "capacity", "fpr", "count"],
                       {"num_counters": st.one_of(st.just(0), st.integers(2**48, 2**64 - 1)),
                        "num_hashes": st.one_of(st.just(0), st.integers(64, 2**32 - 1)), "capacity": st.just(0),
                        "fpr": BAD_RATES, "count": BAD_COUNTS}),
    "scalable bloom": ("<8sHBIddQIQQ", ["magic", "version", "kind", "growth", "tightening", "fpr", "seed", "slices",
                                        "initial_capacity", "payload_bytes"],
                       {"kind": st.integers(2, 255), "growth": st.one_of(st.integers(0, 1), st.integers(64, 2**32 - 1)),
                        "tightening": BAD_RATES, "fpr": BAD_RATES, "initial_capacity": st.just(0)}),
}
BAD_FIELDS = [(name, field) for name, (_, _, bad) in HEADERS.items() for field in bad]


def rewritten(name, data, **fields):
    """``data`` with some header fields replaced and the checksum recomputed."""
    layout, names, _ = HEADERS[name]
    header = struct.Struct(layout)
    values = dict(zip(names, header.unpack_from(data))) | fields
    body = header.pack(*(values[n] for n in names)) + data[header.size:-4]
    return body + struct.pack("<I", zlib.crc32(body))


@settings(deadline=None, max_examples=200)
@given(st.sampled_from(BAD_FIELDS), st.data())
def test_a_header_field_out_of_range_is_refused_whatever_the_checksum(name_and_field, data):
    """A hand-edited header with a valid checksum used to be accepted, then hang or crash."""
    name, field = name_and_field
    value = data.draw(HEADERS[name][2][field], label=field)
    sketch = SKETCHES[name]()
    with pytest.raises(ValueError, match=rf"^corrupt header: {field} must be .*, got "):
        type(sketch).from_bytes(rewritten(name, sketch.to_bytes(), **{field: value}))


def test_a_forged_num_hashes_is_refused_instead_of_hanging():
    """With num_hashes = 2**32 - 1, contains_many looped 4 billion times per key."""
    forged = rewritten("bloom classic", bloom("classic").to_bytes(), num_hashes=2**32 - 1)
    with pytest.raises(ValueError, match=r"num_hashes must be an int in \[1, 64\), got 4294967295"):
        BloomFilter.from_bytes(forged)


def test_fields_that_disagree_are_refused():
    with pytest.raises(ValueError, match="num_bits must be a multiple of 512 for a blocked filter"):
        BloomFilter.from_bytes(rewritten("bloom blocked", BloomFilter(100, 0.01).to_bytes(), kind=1))  # 960 bits
    sketch = scalable()
    with pytest.raises(ValueError, match=f"header names {len(sketch.slices) + 1} slices"):
        ScalableBloomFilter.from_bytes(rewritten("scalable bloom", sketch.to_bytes(), slices=len(sketch.slices) + 1))


# -- merging: one convention for every sketch ---------------------------------------------

def bloom_parts(kind):
    keys = np.arange(3000)
    parts = [BloomFilter(5000, 0.01, kind=kind, seed=3) for _ in range(3)]
    parts[0].add_many(keys[:1000])
    parts[1].add_many(keys[1000:])
    parts[2].add_many(keys)
    return parts


def countmin_parts():
    stream = np.arange(5000) % 97
    parts = [CountMinSketch(0.01, 0.01, seed=3) for _ in range(3)]
    parts[0].add_many(stream[:2000])
    parts[1].add_many(stream[2000:], counts=2)
    parts[2].add_many(stream, counts=np.repeat([1, 2], [2000, 3000]))
    return parts


def counting_parts():
    parts = [CountingBloomFilter(500, 0.01, seed=3) for _ in range(3)]
    parts[0].add_many(np.arange(200))
    parts[1].add_many(np.arange(100, 300))
    parts[2].add_many(np.concatenate([np.arange(200), np.arange(100, 300)]))
    return parts


def scalable_parts():
    parts = [ScalableBloomFilter(1000, 0.01, seed=3) for _ in range(3)]  # one slice each
    parts[0].add_many(np.arange(300))
    parts[1].add_many(np.arange(300, 700))
    parts[2].add_many(np.arange(700))
    return parts


def minhash_lsh_parts():
    sigs = MinHash(64).signatures([np.arange(i, i + 40) for i in range(0, 600, 3)])
    parts = [MinHashLSH(0.5, 64) for _ in range(3)]
    parts[0].insert_many(list(range(100)), sigs[:100])
    parts[1].insert_many(list(range(100, 200)), sigs[100:])
    parts[2].insert_many(list(range(200)), sigs)
    return parts


def simhash_lsh_parts():
    vectors = np.random.default_rng(3).normal(size=(300, 8))
    parts = [SimHashLSH(8, bits=32, bands=4) for _ in range(3)]
    parts[0].add(vectors[:100])
    parts[1].add(vectors[100:], ids=np.arange(100, 300))
    parts[2].add(vectors)
    return parts


MERGEABLE = {
    "bloom classic": lambda: bloom_parts("classic"),
    "bloom blocked": lambda: bloom_parts("blocked"),
    "count-min": countmin_parts,
    "counting bloom": counting_parts,
    "scalable bloom": scalable_parts,
    "minhash lsh": minhash_lsh_parts,
    "simhash lsh": simhash_lsh_parts,
}


@pytest.mark.parametrize("parts", MERGEABLE.values(), ids=MERGEABLE.keys())
def test_merge_changes_the_receiver_and_returns_it(parts):
    """``cms.merge(other)`` used to return a new sketch, so a merge whose result was not
    used was silently lost; now every sketch merges in place, as the LSH indexes did."""
    a, b, both = parts()
    a.merge(b)  # the result unused
    assert a == both and b == parts()[1]
    a, b, _ = parts()
    assert a.merge(b) is a


@pytest.mark.parametrize("parts", MERGEABLE.values(), ids=MERGEABLE.keys())
def test_or_is_a_new_sketch_and_leaves_the_operands(parts):
    a, b, both = parts()
    union = a | b
    assert union == both and union is not a and a == parts()[0] and b == parts()[1]
    with pytest.raises(TypeError):
        a | 1
