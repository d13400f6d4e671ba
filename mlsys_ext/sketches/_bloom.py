"""``BloomFilter``: classic and cache-line-blocked Bloom filters over numpy batches."""
from __future__ import annotations

import math

import numpy as np

from .. import _threads
from . import _bloom_kernels, _bloom_theory
from ._format import ByteFormat
from ._hashing import SEED, hash_keys, key_batch, single_key
from ._validation import COUNT, Integer, OneOf, OpenInterval, validate

KINDS = ("classic", "blocked")
KIND_CODE = Integer(low=0, high=len(KINDS))  # a kind in a byte header: its index in KINDS
_UNIT_BITS = {"classic": _bloom_theory.WORD_BITS, "blocked": _bloom_theory.BLOCK_BITS}  # m is a whole number of these
_SIZERS = {"classic": _bloom_theory.classic_size, "blocked": _bloom_theory.blocked_size}
# What a key's hash is mapped onto: one of m bits (classic) or one of m/512 blocks.
_SPAN_BITS = {"classic": 1, "blocked": _bloom_theory.BLOCK_BITS}
# (serial, parallel) kernels; the kind picks them once, when the filter is made.
_ADD_KERNELS = {"classic": (_bloom_kernels.classic_add, _bloom_kernels.classic_add_parallel),
                "blocked": (_bloom_kernels.blocked_add, _bloom_kernels.blocked_add_parallel)}
_CONTAINS_KERNELS = {"classic": (_bloom_kernels.classic_contains, _bloom_kernels.classic_contains_parallel),
                     "blocked": (_bloom_kernels.blocked_contains, _bloom_kernels.blocked_contains_parallel)}
# The shape any filter may have, however it is made (sized, by hand, from bytes).
# 2**48 bits (32 TiB) is beyond any machine, and far from uint64 overflow in the
# kernels; k is one kernel loop per key, so an absurd one would stall every query.
SHAPE_CONSTRAINTS = {"num_bits": Integer(low=1, high=2**48), "num_hashes": Integer(low=1, high=64)}
_PARAMETER_CONSTRAINTS = {"capacity": Integer(low=1), "fpr": OpenInterval(0.0, 1.0), "kind": OneOf(KINDS),
                          "seed": SEED}

# Serialised form (``_format``): the header fields, then the filter's words (little-endian uint64).
_FORMAT = ByteFormat(b"MLSXBLOM", 1, "BloomFilter", {
    "kind": ("B", KIND_CODE),
    "num_bits": ("Q", SHAPE_CONSTRAINTS["num_bits"]),
    "num_hashes": ("I", SHAPE_CONSTRAINTS["num_hashes"]),
    "seed": ("Q", SEED),
    "capacity": ("Q", _PARAMETER_CONSTRAINTS["capacity"]),
    "fpr": ("d", _PARAMETER_CONSTRAINTS["fpr"]),
    "count": ("Q", COUNT),
})
_KIND_CODES = {kind: code for code, kind in enumerate(KINDS)}


def sized_shape(kind: str, capacity: int, fpr: float) -> tuple[int, int]:
    """(num_bits, num_hashes) for checked ``capacity`` and ``fpr``, refused beyond ``SHAPE_CONSTRAINTS``."""
    num_bits, num_hashes = _SIZERS[kind](capacity, fpr)
    try:
        validate(SHAPE_CONSTRAINTS, num_bits=num_bits, num_hashes=num_hashes)
    except ValueError as exc:
        raise ValueError(f"capacity={capacity} and fpr={fpr} need m = {num_bits} bits and k = {num_hashes}, "
                         f"beyond what a filter may have ({exc}): lower capacity or raise fpr") from None
    return num_bits, num_hashes


class BloomFilter:
    """A set that answers "maybe present" or "certainly absent" in a fixed number of bits.

    ``BloomFilter(capacity, fpr)`` sizes itself so that after ``capacity`` keys an
    absent key is reported present with probability about ``fpr``: m = -n ln p /
    (ln 2)^2 bits, rounded up to whole 64-bit words, and k = (m/n) ln 2 rounded to
    the better neighbouring integer. Adding more keys than ``capacity`` works, but
    the rate then climbs (see ``fpr_exact``).

    ``kind="classic"`` spreads each key's k bits over all m bits. ``kind="blocked"``
    puts them in one 512-bit block (a cache line) chosen by the key: adds and
    queries touch one cache line instead of k, at the price of a higher
    false-positive rate for the same m (blocks receive uneven numbers of keys), which
    ``fpr_exact`` accounts for and ``fpr_classic`` does not. So a blocked filter is
    sized on ``fpr_exact``: the fewest blocks whose exact rate at ``capacity`` is at
    most ``fpr``, with a k chosen for it. That costs more bits per key than classic:
    about 3.5% more at p = 0.01, 8% at 0.001, 15% at 1e-4 and 24% at 1e-5.

    Keys are those ``hash64`` accepts: integers, floats, str and bytes, one at a time
    (``add``, ``in``) or as a numpy array, list or tuple (``add_many``,
    ``contains_many``). Hashes depend only on the key and ``seed``, so filters built
    in different processes with the same parameters combine: ``a.merge(b)`` adds b's
    keys to a (in place), ``a | b`` is a new filter of both, ``a & b`` an intersection.
    Serialise with ``to_bytes``/``from_bytes`` or pickle.

    Not thread-safe for adds from several Python threads at once; each batch is
    itself spread over numba's threads.
    """

    _parameter_constraints = _PARAMETER_CONSTRAINTS

    def __init__(self, capacity: int, fpr: float, kind: str = "classic", seed: int = 0):
        checked = validate(self._parameter_constraints,
                           capacity=capacity, fpr=fpr, kind=kind, seed=seed)
        num_bits, num_hashes = sized_shape(kind, checked["capacity"], checked["fpr"])
        self._capacity, self._fpr, self._kind, self._seed = capacity, fpr, kind, seed
        self._set_state(num_bits, num_hashes, np.zeros(num_bits // 64, dtype=np.uint64), count=0)

    def _set_state(self, num_bits: int, num_hashes: int, words: np.ndarray, count: int) -> None:
        """The derived state (``_kind`` is set)."""
        self._num_bits, self._num_hashes, self._words, self._count = num_bits, num_hashes, words, count
        self._span = np.uint64(num_bits // _SPAN_BITS[self._kind])
        self._add_kernels, self._contains_kernels = _ADD_KERNELS[self._kind], _CONTAINS_KERNELS[self._kind]

    # -- parameters and derived sizes ----------------------------------
    capacity = property(lambda self: self._capacity, doc="Keys the filter was sized for (as given).")
    fpr = property(lambda self: self._fpr, doc="Target false-positive rate at capacity (as given).")
    kind = property(lambda self: self._kind, doc='"classic" or "blocked".')
    seed = property(lambda self: self._seed, doc="Hash seed: filters combine only with equal seeds.")
    num_bits = property(lambda self: self._num_bits, doc="m, the number of bits.")
    num_hashes = property(lambda self: self._num_hashes, doc="k, the bits set per key.")

    @property
    def bits_per_key(self) -> float:
        """m / capacity."""
        return self._num_bits / self._capacity

    @property
    def memory_bytes(self) -> int:
        """Bytes held by the bit array."""
        return self._words.nbytes

    def __len__(self) -> int:
        """Keys added so far, duplicates included (after a merge, the sum of both)."""
        return self._count

    # -- adding and querying -------------------------------------------
    def add(self, key) -> None:
        """Add one key."""
        self._add_hashes(hash_keys([single_key(key, "add", "add_many")], self._seed))

    def add_many(self, keys) -> None:
        """Add every key of a numpy array (any shape), list or tuple."""
        self._add_hashes(hash_keys(key_batch(keys, "add_many", "add"), self._seed))

    def contains_many(self, keys) -> np.ndarray:
        """A bool per key (the keys' shape for an array): False means certainly absent."""
        flat = key_batch(keys, "contains_many", "`key in filter`")
        found = self._contains_hashes(hash_keys(flat, self._seed))
        return found.reshape(keys.shape) if isinstance(keys, np.ndarray) else found

    def __contains__(self, key) -> bool:
        return bool(self.contains_many([single_key(key, "`in`", "contains_many")])[0])

    def _contains_hashes(self, hashes: np.ndarray) -> np.ndarray:
        found = np.empty(len(hashes), dtype=np.bool_)
        _threads.run(self._contains_kernels, len(hashes),
                     hashes, self._words, self._span, self._num_hashes, found)
        return found

    def _add_hashes(self, hashes: np.ndarray) -> None:
        _threads.run(self._add_kernels, len(hashes), hashes, self._words, self._span, self._num_hashes)
        self._count += len(hashes)

    # -- combining -----------------------------------------------------
    def merge(self, other: BloomFilter) -> BloomFilter:
        """Add the keys of ``other`` to this filter (in place; returns self): it becomes
        exactly the filter that adding both key sets to one filter gives. ``a | b`` is
        a new filter, the operands unchanged."""
        self._check_combinable(other, "merge")
        self._words |= other._words
        self._count += other._count
        return self

    def intersection(self, other: BloomFilter) -> BloomFilter:
        """A filter reporting every key present in both as present. It may also report
        keys found in only one (its false-positive rate is at least that of a filter
        built from the true intersection). ``len`` is the smaller of the two counts."""
        self._check_combinable(other, "intersection")
        return self._derived(self._words & other._words, min(self._count, other._count))

    def _copy(self) -> BloomFilter:
        return self._derived(self._words.copy(), self._count)

    def __or__(self, other):
        return self._copy().merge(other) if isinstance(other, BloomFilter) else NotImplemented

    def __and__(self, other):
        return self.intersection(other) if isinstance(other, BloomFilter) else NotImplemented

    def _check_combinable(self, other, operation: str) -> None:
        if not isinstance(other, BloomFilter):
            raise TypeError(f"{operation} needs another BloomFilter, got {type(other).__name__}")
        differences = [f"{name} ({mine!r} vs {theirs!r})"
                       for name, mine, theirs in zip(("kind", "num_bits", "num_hashes", "seed"),
                                                     self._shape(), other._shape())
                       if mine != theirs]
        if differences:
            raise ValueError(f"cannot combine filters that differ in {', '.join(differences)} "
                             f"({operation}): build both with the same capacity, fpr, kind and seed")

    def _shape(self) -> tuple:
        return self._kind, self._num_bits, self._num_hashes, int(self._seed)

    def _derived(self, words: np.ndarray, count: int) -> BloomFilter:
        parameters = self._capacity, self._fpr, self._kind, self._seed
        return type(self)._assemble(parameters, self._num_bits, self._num_hashes, words, count)

    @classmethod
    def with_shape(cls, num_bits: int, num_hashes: int, capacity: int, kind: str = "classic",
                   seed: int = 0) -> BloomFilter:
        """A filter of ``num_bits`` bits (rounded up to whole 64-bit words, or 512-bit blocks)
        and ``num_hashes`` bits per key, chosen by hand rather than sized from a target
        rate: for experiments. ``fpr`` is then the textbook rate at ``capacity``."""
        checked = validate(SHAPE_CONSTRAINTS | _PARAMETER_CONSTRAINTS,
                           num_bits=num_bits, num_hashes=num_hashes, capacity=capacity, kind=kind, seed=seed)
        unit = _UNIT_BITS[kind]
        bits = -(-checked["num_bits"] // unit) * unit
        fpr = float(_bloom_theory.fpr_classic(bits, checked["num_hashes"], np.asarray(capacity)))
        return cls._assemble((capacity, fpr, kind, seed), bits, checked["num_hashes"],
                             np.zeros(bits // 64, dtype=np.uint64), 0)

    @classmethod
    def _assemble(cls, parameters: tuple, num_bits: int, num_hashes: int, words: np.ndarray,
                  count: int) -> BloomFilter:
        """A filter from its (capacity, fpr, kind, seed) and its state, not sized anew."""
        result = object.__new__(cls)
        result._capacity, result._fpr, result._kind, result._seed = parameters
        result._set_state(num_bits, num_hashes, words, count)
        return result

    # -- estimates -----------------------------------------------------
    def approx_count(self) -> float:
        """Distinct keys estimated from the number X of set bits: the n whose expected
        fill is X (Swamidass and Baldi's -m/k ln(1 - X/m) for classic; for blocked the
        same inversion of its own expected fill, 1 - (1 - (1 - (1 - 1/512)^k) / B)^n).
        Infinite when every bit is set."""
        set_bits = int(_bloom_kernels.count_set_bits(self._words))
        empty_fraction = 1.0 - set_bits / self._num_bits
        if empty_fraction == 0.0:
            return math.inf
        if self._kind == "classic":
            return -self._num_bits / self._num_hashes * math.log(empty_fraction)
        num_blocks = self._num_bits // _bloom_theory.BLOCK_BITS
        per_key_fill = -math.expm1(self._num_hashes * math.log1p(-1 / _bloom_theory.BLOCK_BITS)) / num_blocks
        return math.log(empty_fraction) / math.log1p(-per_key_fill)

    def fpr_classic(self, n=None):
        """The textbook rate (1 - e^{-kn/m})^k after ``n`` keys (default: ``len(self)``).
        ``n`` may be an int or an array of ints; the result has its shape."""
        counts = self._counts(n)
        return _like(n, _bloom_theory.fpr_classic(self._num_bits, self._num_hashes, counts))

    def fpr_exact(self, n=None):
        """The expected false-positive rate after ``n`` distinct keys (default:
        ``len(self)``): the mean of (X/m)^k over the random number X of set bits
        (for blocked, of the set bits of the query's block), which is larger than
        ``fpr_classic`` for small m. Exact (a numba recursion over the keys) while
        m n k <= 5e7, and always for blocked; beyond that X is taken as normal with
        its exact mean and variance. ``n`` may be an int or an array of ints."""
        counts = self._counts(n).ravel()
        if self._kind == "classic":
            rates = _bloom_theory.fpr_exact_classic(self._num_bits, self._num_hashes, counts)
        else:
            rates = _bloom_theory.fpr_exact_blocked(int(self._span), self._num_hashes, counts)
        return _like(n, rates.reshape(np.shape(n) if n is not None else ()))

    def _counts(self, n) -> np.ndarray:
        """``n`` (default: the keys added) checked, as an int64 array."""
        if n is None:
            return np.asarray(self._count, dtype=np.int64)
        if not isinstance(n, (np.ndarray, list, tuple)):
            return np.asarray(COUNT.check("n", n), dtype=np.int64)
        counts = np.asarray(n)
        if counts.size and counts.dtype.kind not in "iu":
            raise TypeError(f"n must be ints, got an array of {counts.dtype}")
        if (counts < 0).any():
            raise ValueError(f"n must be ints >= 0, got {counts.min()}")
        return counts.astype(np.int64)

    # -- serialisation -------------------------------------------------
    def to_bytes(self) -> bytes:
        """The filter as bytes: a versioned header, the bits, and a CRC-32 checksum."""
        fields = (_KIND_CODES[self._kind], self._num_bits, self._num_hashes, int(self._seed),
                  int(self._capacity), float(self._fpr), self._count)
        return _FORMAT.pack(fields, self._words.astype("<u8", copy=False).tobytes())

    @classmethod
    def from_bytes(cls, data) -> BloomFilter:
        """The filter ``to_bytes`` wrote. Raises ValueError, saying what is wrong, for data
        that are truncated, corrupt, not a Bloom filter, or from a newer format."""
        fields, payload = _FORMAT.unpack(data, lambda f: (f[1] // 8, f"{f[1]} bits"))
        kind_code, num_bits, num_hashes, seed, capacity, fpr, count = fields
        kind = KINDS[kind_code]
        if num_bits % _UNIT_BITS[kind]:
            raise ValueError(f"corrupt header: num_bits must be a multiple of {_UNIT_BITS[kind]} "
                             f"for a {kind} filter, got {num_bits}")
        words = np.frombuffer(payload, dtype="<u8").astype(np.uint64)
        return cls._assemble((capacity, fpr, kind, seed), num_bits, num_hashes, words, count)

    def __reduce__(self):
        return type(self).from_bytes, (self.to_bytes(),)

    def __eq__(self, other) -> bool:
        if not isinstance(other, BloomFilter):
            return NotImplemented
        return (self._shape() == other._shape() and self._count == other._count
                and self._capacity == other._capacity and self._fpr == other._fpr
                and np.array_equal(self._words, other._words))

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        return (f"BloomFilter(capacity={self._capacity!r}, fpr={self._fpr!r}, kind={self._kind!r}, "
                f"seed={self._seed!r}): m={self._num_bits} bits, k={self._num_hashes}, {self._count} keys added")


def _like(n, values: np.ndarray):
    """A float for a scalar ``n`` (or None), else the array."""
    return float(values) if n is None or np.ndim(n) == 0 else values
