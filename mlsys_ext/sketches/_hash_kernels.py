"""numba kernels behind ``hash64``: one seeded 64-bit hash per key, written into ``out``.

Private (rule 6): callers pass preallocated, C-contiguous arrays and valid arguments;
nothing is checked here. Each kernel has a serial form and a ``_parallel`` one that
splits the keys over ``n_threads`` threads: small batches must not enter a parallel
region at all, as waking the thread team costs up to a millisecond on a busy machine.

Every hash is a pure function of the key's bytes and the seed (no Python ``hash()``,
no per-process salt), so it is the same in every process and every run, and
sketches built apart can be merged. The values are part of the serialised sketch
formats: changing them breaks stored filters.

numba's cache checks only the source file of each cached function: after editing
the helpers here or in ``_intrinsics`` that ``_bloom_kernels`` and
``_countmin_kernels`` inline, delete ``mlsys_ext/sketches/__pycache__`` so that
their kernels are compiled again.

Three key domains get different seed keys (``_INT_DOMAIN`` ...), so that the
integer 1, the float 1.0 and the byte string b"\\x01" do not share a hash by accident
of their bit patterns.
"""
import numpy as np
from numba import njit, prange

# 2**64 / golden ratio: splitmix64's increment, an odd number with well-spread bits.
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
# splitmix64's finaliser multipliers (Stafford's "Mix13").
_MIX13_A = np.uint64(0xBF58476D1CE4E5B9)
_MIX13_B = np.uint64(0x94D049BB133111EB)
# Odd multipliers with no structure (the first 64 fractional bits of sqrt(2) and
# sqrt(3)), used to scramble each 8-byte word of a byte string.
_WORD_A = np.uint64(0x6A09E667F3BCC909)
_WORD_B = np.uint64(0xBB67AE8584CAA73B)

_INT_DOMAIN = np.uint64(0x243F6A8885A308D3)
_FLOAT_DOMAIN = np.uint64(0x13198A2E03707344)
_BYTES_DOMAIN = np.uint64(0xA4093822299F31D0)

_FLOAT_SIGN = np.uint64(0x8000000000000000)
_FLOAT_EXPONENT = np.uint64(0x7FF0000000000000)
_FLOAT_MANTISSA = np.uint64(0x000FFFFFFFFFFFFF)
_CANONICAL_NAN = np.uint64(0x7FF8000000000000)


@njit(inline="always")
def fmix64(x):
    """splitmix64's finaliser: a bijection of uint64 in which every input bit
    flips each output bit with probability close to 1/2."""
    x = (x ^ (x >> np.uint64(30))) * _MIX13_A
    x = (x ^ (x >> np.uint64(27))) * _MIX13_B
    return x ^ (x >> np.uint64(31))


@njit(inline="always")
def _rotl(x, r):
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


@njit(inline="always")
def seed_key(seed, domain):
    return fmix64(seed ^ domain)


@njit(inline="always")
def hash_word(x, key):
    """A keyed hash of one 64-bit word: ``hash64`` of an integer, and each of a
    Count-Min sketch's row hashes of a key's ``hash64``."""
    # Two finaliser rounds with the key injected before each: one round keyed by
    # XOR alone would make the hashes of two seeds a fixed re-labelling of each
    # other (h_s(x) = h_t(x ^ k_s ^ k_t)).
    return fmix64(fmix64(x ^ key) + key)


@njit(inline="always")
def thread_share(n, t, n_threads):
    """Thread t's share [lo, hi) of n items."""
    return t * n // n_threads, (t + 1) * n // n_threads


@njit(inline="always")
def _hash_ints_range(values, key, out):
    for j in range(values.shape[0]):
        out[j] = hash_word(values[j], key)


@njit(cache=True, fastmath=True)
def hash_ints(values, seed, out):
    """``values``: uint64 (integers as their 64-bit two's-complement pattern)."""
    _hash_ints_range(values, seed_key(seed, _INT_DOMAIN), out)


@njit(cache=True, fastmath=True, parallel=True)
def hash_ints_parallel(values, seed, out, n_threads):
    key = seed_key(seed, _INT_DOMAIN)
    for t in prange(n_threads):
        lo, hi = thread_share(values.shape[0], t, n_threads)
        _hash_ints_range(values[lo:hi], key, out[lo:hi])


@njit(inline="always")
def _hash_float_bits_range(bits, key, out):
    for j in range(bits.shape[0]):
        x = bits[j]
        if x == _FLOAT_SIGN:
            x = np.uint64(0)
        elif (x & _FLOAT_EXPONENT) == _FLOAT_EXPONENT and (x & _FLOAT_MANTISSA) != 0:
            x = _CANONICAL_NAN
        out[j] = hash_word(x, key)


@njit(cache=True, fastmath=True)
def hash_float_bits(bits, seed, out):
    """``bits``: float64 values viewed as uint64. -0.0 becomes 0.0 and every NaN the
    canonical quiet NaN, so keys that compare equal (or are both NaN) hash equal.
    Done on the integer pattern: fastmath lets the compiler assume no NaN in floats."""
    _hash_float_bits_range(bits, seed_key(seed, _FLOAT_DOMAIN), out)


@njit(cache=True, fastmath=True, parallel=True)
def hash_float_bits_parallel(bits, seed, out, n_threads):
    key = seed_key(seed, _FLOAT_DOMAIN)
    for t in prange(n_threads):
        lo, hi = thread_share(bits.shape[0], t, n_threads)
        _hash_float_bits_range(bits[lo:hi], key, out[lo:hi])


@njit(inline="always")
def _load_le(buffer, start, count):
    """``count`` (<= 8) bytes from ``buffer[start:]`` as a little-endian integer; LLVM
    merges the eight byte loads of a full word into one load."""
    word = np.uint64(0)
    for b in range(count):
        word |= np.uint64(buffer[start + b]) << np.uint64(8 * b)
    return word


@njit(inline="always")
def _scramble(word):
    # Multiply spreads low bits upwards, the rotation brings the mixed high bits
    # down, the second multiply spreads them again; each step is a bijection, so
    # two strings differing in one word never collide before finalisation.
    return _rotl(word * _WORD_A, 31) * _WORD_B


@njit(inline="always")
def _hash_byte_string(buffer, start, stop, key):
    length = np.uint64(stop - start)
    state = key ^ (length * GOLDEN)
    i = start
    while i + 8 <= stop:
        state = _rotl(state ^ _scramble(_load_le(buffer, i, 8)), 29) * GOLDEN
        i += 8
    # The tail (0 to 7 bytes) is zero-padded; the length folded into the state
    # keeps b"a" and b"a\x00" apart.
    state ^= _scramble(_load_le(buffer, i, stop - i))
    return fmix64(fmix64(state) ^ key)


@njit(inline="always")
def _hash_bytes_range(buffer, offsets, key, out):
    for j in range(out.shape[0]):
        out[j] = _hash_byte_string(buffer, offsets[j], offsets[j + 1], key)


@njit(cache=True, fastmath=True)
def hash_bytes(buffer, offsets, seed, out):
    """Key j is ``buffer[offsets[j]:offsets[j + 1]]`` (str keys arrive UTF-8 encoded)."""
    _hash_bytes_range(buffer, offsets, seed_key(seed, _BYTES_DOMAIN), out)


@njit(cache=True, fastmath=True, parallel=True)
def hash_bytes_parallel(buffer, offsets, seed, out, n_threads):
    key = seed_key(seed, _BYTES_DOMAIN)
    for t in prange(n_threads):
        lo, hi = thread_share(out.shape[0], t, n_threads)
        _hash_bytes_range(buffer, offsets[lo:hi + 1], key, out[lo:hi])
