"""``CountingBloomFilter``: a Bloom filter with counters instead of bits, so keys can be removed."""
from __future__ import annotations

import numpy as np

from . import _bloom_theory, _counting_kernels
from ._bloom import SHAPE_CONSTRAINTS, sized_shape
from ._format import ByteFormat
from ._hashing import SEED, hash_keys, key_batch, single_key
from ._validation import COUNT, Integer, OpenInterval, validate

_PARAMETER_CONSTRAINTS = {"capacity": Integer(low=1), "fpr": OpenInterval(0.0, 1.0), "seed": SEED}
_FORMAT = ByteFormat(b"MLSXCBLM", 1, "CountingBloomFilter", {
    "num_counters": ("Q", SHAPE_CONSTRAINTS["num_bits"]),
    "num_hashes": ("I", SHAPE_CONSTRAINTS["num_hashes"]),
    "seed": ("Q", SEED),
    "capacity": ("Q", _PARAMETER_CONSTRAINTS["capacity"]),
    "fpr": ("d", _PARAMETER_CONSTRAINTS["fpr"]),
    "count": ("Q", COUNT),
})


class CountingBloomFilter:
    """Like a classic ``BloomFilter`` (same sizing, same positions, same false-positive
    theory), with a uint8 counter per position: ``remove`` undoes an ``add``.

    Remove only keys you added: removing a key that is reported present only by
    chance (a false positive) decrements other keys' counters and can make them
    vanish. A key reported absent (some counter is zero) was certainly never added,
    and removing it raises KeyError. A counter that reaches 255 stays at 255. Costs
    8 times the memory of a ``BloomFilter``; serial kernels. ``a.merge(b)`` adds b's
    counters to a (in place), ``a | b`` is a new filter of both.
    """

    _parameter_constraints = _PARAMETER_CONSTRAINTS

    def __init__(self, capacity: int, fpr: float, seed: int = 0):
        validate(self._parameter_constraints, capacity=capacity, fpr=fpr, seed=seed)
        num_bits, num_hashes = sized_shape("classic", capacity, fpr)  # the positions of a classic filter
        self._capacity, self._fpr, self._seed = capacity, fpr, seed
        self._set_state(num_hashes, np.zeros(num_bits, dtype=np.uint8), 0)

    def _set_state(self, num_hashes: int, counters: np.ndarray, count: int) -> None:
        self._num_hashes, self._counters, self._count = num_hashes, counters, count
        self._m = np.uint64(len(counters))

    capacity = property(lambda self: self._capacity, doc="Keys the filter was sized for (as given).")
    fpr = property(lambda self: self._fpr, doc="Target false-positive rate at capacity (as given).")
    seed = property(lambda self: self._seed, doc="Hash seed.")
    num_counters = property(lambda self: len(self._counters), doc="m, the number of counters.")
    num_hashes = property(lambda self: self._num_hashes, doc="k, the counters each key increments.")

    @property
    def memory_bytes(self) -> int:
        return self._counters.nbytes

    def __len__(self) -> int:
        """Keys added minus keys removed."""
        return self._count

    def add(self, key) -> None:
        self._add(hash_keys([single_key(key, "add", "add_many")], self._seed))

    def add_many(self, keys) -> None:
        self._add(hash_keys(key_batch(keys, "add_many", "add"), self._seed))

    def _add(self, hashes: np.ndarray) -> None:
        _counting_kernels.counting_add(hashes, self._counters, self._m, self._num_hashes)
        self._count += len(hashes)

    def contains_many(self, keys) -> np.ndarray:
        found = self._contains(hash_keys(key_batch(keys, "contains_many", "`key in filter`"), self._seed))
        return found.reshape(keys.shape) if isinstance(keys, np.ndarray) else found

    def _contains(self, hashes: np.ndarray) -> np.ndarray:
        found = np.empty(len(hashes), dtype=np.bool_)
        _counting_kernels.counting_contains(hashes, self._counters, self._m, self._num_hashes, found)
        return found

    def __contains__(self, key) -> bool:
        return bool(self.contains_many([single_key(key, "`in`", "contains_many")])[0])

    def remove(self, key) -> None:
        self.remove_many([single_key(key, "remove", "remove_many")])

    def remove_many(self, keys) -> None:
        """Remove keys added before. If any is certainly absent, raise KeyError and remove none."""
        hashes = hash_keys(key_batch(keys, "remove_many", "remove"), self._seed)
        absent = ~self._contains(hashes)
        if absent.any():
            raise KeyError(f"{int(absent.sum())} of {len(hashes)} keys were never added "
                           "(some of their counters are zero); nothing was removed")
        _counting_kernels.counting_remove(hashes, self._counters, self._m, self._num_hashes)
        self._count -= len(hashes)

    def fpr_classic(self, n=None) -> float:
        """(1 - e^{-kn/m})^k after ``n`` keys (default: the keys held now)."""
        n = self._count if n is None else n
        return float(_bloom_theory.fpr_classic(len(self._counters), self._num_hashes, np.asarray(n)))

    def fpr_exact(self, n=None) -> float:
        """E[(X/m)^k] over the number X of non-zero counters after ``n`` keys (as ``BloomFilter``)."""
        n = self._count if n is None else n
        return float(_bloom_theory.fpr_exact_classic(len(self._counters), self._num_hashes,
                                                     np.asarray([n], dtype=np.int64))[0])

    def merge(self, other: CountingBloomFilter) -> CountingBloomFilter:
        """Add the keys of ``other`` to this filter (in place; returns self): it becomes
        the filter both key multisets would give (counters added, saturating at 255).
        ``a | b`` is a new filter, the operands unchanged."""
        if not isinstance(other, CountingBloomFilter) or (self.num_counters, self._num_hashes, self._seed) != \
                (other.num_counters, other._num_hashes, other._seed):
            raise ValueError("merge needs a CountingBloomFilter of equal size, k and seed")
        np.minimum(self._counters.astype(np.uint16) + other._counters, 255, out=self._counters, casting="unsafe")
        self._count += other._count
        return self

    def __or__(self, other):
        return self._copy().merge(other) if isinstance(other, CountingBloomFilter) else NotImplemented

    def _copy(self) -> CountingBloomFilter:
        return self._assemble((self._capacity, self._fpr, self._seed), self._num_hashes,
                              self._counters.copy(), self._count)

    @classmethod
    def _assemble(cls, parameters: tuple, num_hashes: int, counters: np.ndarray, count: int) -> CountingBloomFilter:
        """A filter from its (capacity, fpr, seed) and its state, not sized anew."""
        out = object.__new__(cls)
        out._capacity, out._fpr, out._seed = parameters
        out._set_state(num_hashes, counters, count)
        return out

    def to_bytes(self) -> bytes:
        fields = (len(self._counters), self._num_hashes, int(self._seed), int(self._capacity),
                  float(self._fpr), self._count)
        return _FORMAT.pack(fields, self._counters.tobytes())

    @classmethod
    def from_bytes(cls, data) -> CountingBloomFilter:
        fields, payload = _FORMAT.unpack(data, lambda f: (f[0], f"{f[0]} counters"))
        num_counters, num_hashes, seed, capacity, fpr, count = fields
        return cls._assemble((capacity, fpr, seed), num_hashes, np.frombuffer(payload, dtype=np.uint8).copy(), count)

    def __reduce__(self):
        return type(self).from_bytes, (self.to_bytes(),)

    def __eq__(self, other) -> bool:
        if not isinstance(other, CountingBloomFilter):
            return NotImplemented
        return self.to_bytes() == other.to_bytes()

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        return (f"CountingBloomFilter(capacity={self._capacity!r}, fpr={self._fpr!r}, seed={self._seed!r}): "
                f"m={self.num_counters} counters, k={self._num_hashes}, {self._count} keys held")
