"""hash64: stable across processes, seeded, well mixed, value semantics, clear refusals."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys_ext.sketches import hash64

SAMPLE_KEYS = {
    "ints": [0, 1, -1, 2**63 - 1, -(2**63), 123456789],
    "floats": [0.0, 1.5, -2.25, 1e300, float("inf")],
    "strs": ["", "a", "hello, world", "naïve ☃", "日本語のテキスト" * 3],
    "bytes": [b"", b"\x00", b"\xff" * 17, bytes(range(40))],
}


def bit_flips(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Number of differing bits between paired uint64 values."""
    return np.unpackbits((a ^ b).view(np.uint8)).reshape(-1, 64).sum(axis=1)


def test_hashes_are_stable_across_processes():
    """A fresh interpreter, with a different str-hash salt, computes the same values."""
    code = ("import json, sys; from mlsys_ext.sketches import hash64; keys = json.loads(sys.argv[1]); "
            "print(json.dumps({name: [[int(h) for h in hash64(values, seed=s)] for s in (0, 7)] "
            "for name, values in keys.items() if name != 'bytes'}))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    textual = {k: v for k, v in SAMPLE_KEYS.items() if k != "bytes"}
    out = subprocess.run([sys.executable, "-c", code, json.dumps(textual)], env=env,
                         capture_output=True, text=True, check=True).stdout
    theirs = json.loads(out)
    for name, values in textual.items():
        assert theirs[name] == [[int(h) for h in hash64(values, seed=s)] for s in (0, 7)], name


def test_pinned_values_do_not_change():
    """Serialised filters hold bits placed by these hashes: changing them breaks stored data."""
    assert [int(h) for h in hash64([0, 1, -1, 2**63])] == [
        3998946291433354177, 9542255778911806973, 269398609614781818, 11056337410014462481]
    assert [int(h) for h in hash64([0, 1], seed=42)] == [5191263759984321501, 4885442908569895489]
    assert [int(h) for h in hash64([0.0, 1.5, float("inf")])] == [
        1560793209542362964, 10669901024873729272, 4856127982244796899]
    assert [int(h) for h in hash64(["", "a", "hello, world", "naïve ☃"])] == [
        15617360817425011641, 11879909415461006574, 16582206179263095402, 13801770173668309571]


def test_seeds_give_unrelated_hashes():
    keys = np.arange(20_000)
    a, b = hash64(keys, seed=0), hash64(keys, seed=1)
    assert not np.any(a == b)
    agreement = 1 - bit_flips(a, b).mean() / 64  # fraction of equal bits: 1/2 if unrelated
    assert abs(agreement - 0.5) < 6 * np.sqrt(0.25 / (64 * len(keys)))


def test_distinct_integers_never_collide():
    """For integers the hash is a bijection of the 64-bit pattern."""
    keys = np.arange(-500_000, 500_000)
    assert len(np.unique(hash64(keys))) == len(keys)


def test_every_int_input_bit_flips_each_output_bit_half_the_time():
    rng = np.random.default_rng(1)
    n = 2_000
    keys = rng.integers(0, 2**64, n, dtype=np.uint64)
    base = hash64(keys)
    flip_probability = np.empty((64, 64))
    for bit in range(64):
        changed = base ^ hash64(keys ^ np.uint64(1 << bit))
        flip_probability[bit] = ((changed[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)).mean(axis=0)
        assert abs(bit_flips(base, hash64(keys ^ np.uint64(1 << bit))).mean() - 32) < 6 * 4 / np.sqrt(n)
    # Each of the 4096 (input bit, output bit) cells is a binomial mean over n keys.
    assert np.abs(flip_probability - 0.5).max() < 6 * np.sqrt(0.25 / n)


@pytest.mark.parametrize("length", [1, 3, 8, 13, 24])
def test_every_byte_string_bit_flips_about_half_the_output(length):
    rng = np.random.default_rng(length)
    n = 400
    strings = [bytes(row) for row in rng.integers(0, 256, (n, length), dtype=np.uint8)]
    base = hash64(strings)
    for bit in range(8 * length):
        flipped = [s[: bit // 8] + bytes([s[bit // 8] ^ (1 << bit % 8)]) + s[bit // 8 + 1:] for s in strings]
        assert abs(bit_flips(base, hash64(flipped)).mean() - 32) < 6 * 4 / np.sqrt(n), bit


def test_integers_hash_by_value_across_widths():
    expected = hash64(np.array([-1, 0, 5, 127], dtype=np.int64))
    for dtype in (np.int8, np.int16, np.int32):
        assert np.array_equal(hash64(np.array([-1, 0, 5, 127], dtype=dtype)), expected)
    assert np.array_equal(hash64([-1, 0, 5, 127]), expected)
    assert np.array_equal(hash64(np.array([0, 5, 127], dtype=np.uint8)), expected[1:])
    assert hash64(np.uint16(5)) == hash64(5) == hash64(np.array([5], dtype=np.uint64))[0]
    assert hash64(True) == hash64(1)
    # Taken modulo 2**64: the documented price of hashing the 64-bit pattern.
    assert hash64(-1) == hash64(2**64 - 1)


def test_floats_hash_by_value():
    assert hash64(0.0) == hash64(-0.0)
    assert hash64(np.float32(0.5)) == hash64(0.5) == hash64(np.float16(0.5))
    nans = np.array([np.nan, -np.nan, np.float64(np.nan) * 0]).view(np.uint64)
    nans[1] |= np.uint64(12345)  # another NaN payload
    assert len(set(hash64(nans.view(np.float64)).tolist())) == 1
    assert hash64(1.0) != hash64(1)


def test_str_hashes_as_its_utf8_bytes():
    assert hash64("naïve ☃") == hash64("naïve ☃".encode())
    assert hash64(["", "a"]).tolist() == hash64([b"", bytearray(b"a")]).tolist()
    assert hash64(b"a") != hash64(b"a\x00")
    assert hash64("\ud800") != hash64("")  # a lone surrogate is still a key
    assert np.array_equal(hash64(np.array(["x", "yz"])), hash64(["x", "yz"]))
    assert np.array_equal(hash64(np.array([b"x", b"yz"])), hash64([b"x", b"yz"]))
    assert np.array_equal(hash64(np.array(["x", "yz"], dtype=object)), hash64(["x", "yz"]))


def test_shapes():
    assert hash64(np.arange(6).reshape(2, 3)).shape == (2, 3)
    assert hash64(np.array(7)).shape == ()
    assert isinstance(hash64("a"), np.uint64)
    assert hash64([]).shape == (0,) and hash64([]).dtype == np.uint64
    assert np.array_equal(hash64(np.arange(10)[::3]), hash64([0, 3, 6, 9]))


@pytest.mark.parametrize("keys, error, words", [
    (None, TypeError, "NoneType"),
    ({1, 2}, TypeError, "set"),
    ([1, 1.0], TypeError, "mix float, int"),
    ([1, "a"], TypeError, "mix int, str"),
    ([[1, 2]], TypeError, "type list"),
    ([None], TypeError, "type NoneType"),
    (np.array([1 + 2j]), TypeError, "complex128"),
    (np.array(["2024-01-01"], dtype="datetime64[D]"), TypeError, "view it as int64"),
    ([2**64], ValueError, "does not fit in 64 bits"),
    ([-(2**63) - 1], ValueError, "does not fit in 64 bits"),
])
def test_what_cannot_be_hashed_is_refused_clearly(keys, error, words):
    with pytest.raises(error, match=words):
        hash64(keys)


@pytest.mark.skipif(np.dtype(np.longdouble).itemsize <= 8, reason="long double is float64 here")
def test_long_double_is_refused_rather_than_rounded():
    with pytest.raises(TypeError, match="longdouble|float128"):
        hash64(np.array([1.0], dtype=np.longdouble))
    with pytest.raises(TypeError, match="longdouble|float128"):
        hash64(np.longdouble(1.0))


@pytest.mark.parametrize("seed, error", [(-1, ValueError), (2**64, ValueError), (1.0, TypeError),
                                         ("0", TypeError), (True, TypeError)])
def test_bad_seeds_are_refused(seed, error):
    with pytest.raises(error, match="seed"):
        hash64(1, seed=seed)


def test_python_ints_beyond_int64_use_their_64_bit_pattern():
    assert np.array_equal(hash64([-1, 2**63]), hash64(np.array([2**64 - 1, 2**63], dtype=np.uint64)))


scalars = st.one_of(
    st.integers(-(2**63), 2**64 - 1).map(lambda v: [v]),
    st.lists(st.integers(-(2**63), 2**63 - 1), min_size=1, max_size=20),
    st.lists(st.floats(allow_nan=True), min_size=1, max_size=20),
    st.lists(st.text(), min_size=1, max_size=20),
    st.lists(st.binary(), min_size=1, max_size=20),
)


@settings(deadline=None, max_examples=60)
@given(keys=scalars, seed=st.integers(0, 2**64 - 1))
def test_a_batch_hashes_like_its_keys_one_by_one(keys, seed):
    batch = hash64(keys, seed=seed)
    assert batch.tolist() == [int(hash64(k, seed=seed)) for k in keys]


def test_a_range_hashes_like_the_same_integers():
    from mlsys_ext.sketches import hash64

    assert np.array_equal(hash64(range(3, 50, 7)), hash64(list(range(3, 50, 7))))
