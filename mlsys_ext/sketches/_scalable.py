"""``ScalableBloomFilter``: a Bloom filter that grows, keeping its total false-positive rate at p."""
from __future__ import annotations

import struct

import numpy as np

from ._bloom import KIND_CODE, KINDS, BloomFilter
from ._format import ByteFormat
from ._hashing import SEED, hash_keys, key_batch, single_key
from ._validation import Integer, OneOf, OpenInterval, validate

_PARAMETER_CONSTRAINTS = {
    "initial_capacity": Integer(low=1),
    "fpr": OpenInterval(0.0, 1.0),
    "growth": Integer(low=2, high=64),
    "tightening": OpenInterval(0.0, 1.0),
    "kind": OneOf(KINDS),
    "seed": SEED,
}
_FORMAT = ByteFormat(b"MLSXSBLM", 1, "ScalableBloomFilter", {
    "kind": ("B", KIND_CODE),
    "growth": ("I", _PARAMETER_CONSTRAINTS["growth"]),
    "tightening": ("d", _PARAMETER_CONSTRAINTS["tightening"]),
    "fpr": ("d", _PARAMETER_CONSTRAINTS["fpr"]),
    "seed": ("Q", SEED),
    "slices": ("I", Integer(low=0)),
    "initial_capacity": ("Q", _PARAMETER_CONSTRAINTS["initial_capacity"]),
    "payload_bytes": ("Q", Integer(low=0)),
})
_SLICE_LENGTH = struct.Struct("<Q")


class ScalableBloomFilter:
    """A chain of Bloom filters ("slices") for when the number of keys is not known.

    Slice i holds ``initial_capacity * growth**i`` keys at rate p (1 - r) r**i, r being
    ``tightening``; a key is present if any slice reports it. The rates sum to at most
    p (1 - r) / (1 - r) = p, so the total false-positive rate stays at or below
    ``fpr`` however many slices are added. (Giving slice i p r**(i+1) instead, as
    pybloom-live 4.0 does with r = 0.9, lets the total climb towards p r / (1 - r) = 9p.)

    Keys, batches, seeds and serialisation as for ``BloomFilter``. ``a.merge(b)`` adds
    b's keys to a (in place), ``a | b`` is a new filter of both.
    """

    _parameter_constraints = _PARAMETER_CONSTRAINTS

    def __init__(self, initial_capacity: int = 1000, fpr: float = 0.01, growth: int = 2,
                 tightening: float = 0.5, kind: str = "classic", seed: int = 0):
        validate(self._parameter_constraints, initial_capacity=initial_capacity, fpr=fpr, growth=growth,
                 tightening=tightening, kind=kind, seed=seed)
        self._initial_capacity, self._fpr, self._growth = initial_capacity, fpr, growth
        self._tightening, self._kind, self._seed = tightening, kind, seed
        self._slices: list[BloomFilter] = []

    initial_capacity = property(lambda self: self._initial_capacity, doc="Keys the first slice holds.")
    fpr = property(lambda self: self._fpr, doc="Bound on the total false-positive rate (as given).")
    growth = property(lambda self: self._growth, doc="Each slice holds this many times the previous one's keys.")
    tightening = property(lambda self: self._tightening, doc="r: slice i gets rate fpr (1 - r) r**i.")
    kind = property(lambda self: self._kind, doc='"classic" or "blocked", for every slice.')
    seed = property(lambda self: self._seed, doc="Hash seed of every slice.")

    @property
    def slices(self) -> tuple[BloomFilter, ...]:
        return tuple(self._slices)

    def slice_fpr(self, i: int) -> float:
        """The rate slice ``i`` is sized for: fpr (1 - r) r**i."""
        return self._fpr * (1 - self._tightening) * self._tightening ** i

    def _new_slice(self) -> BloomFilter:
        i = len(self._slices)
        bf = BloomFilter(self._initial_capacity * self._growth ** i, self.slice_fpr(i), self._kind, self._seed)
        self._slices.append(bf)
        return bf

    def __len__(self) -> int:
        return sum(len(s) for s in self._slices)

    @property
    def memory_bytes(self) -> int:
        return sum(s.memory_bytes for s in self._slices)

    def add(self, key) -> None:
        self.add_many([key])

    def add_many(self, keys) -> None:
        """Add keys, filling the newest slice to its capacity and opening new ones as needed."""
        flat = keys.ravel() if isinstance(keys, np.ndarray) else list(keys)
        start = 0
        while start < len(flat):
            current = self._slices[-1] if self._slices else None
            if current is None or len(current) >= current.capacity:
                current = self._new_slice()
            room = current.capacity - len(current)
            current.add_many(flat[start:start + room])
            start += room

    def contains_many(self, keys) -> np.ndarray:
        """A bool per key: present in some slice."""
        if not self._slices:
            return np.zeros(np.shape(keys) if isinstance(keys, np.ndarray) else len(keys), dtype=np.bool_)
        # every slice has the filter's seed, so the keys are hashed once for all of them
        hashes = hash_keys(key_batch(keys, "contains_many", "`key in filter`"), self._seed)
        found = self._slices[0]._contains_hashes(hashes)
        for s in self._slices[1:]:
            found |= s._contains_hashes(hashes)
        return found.reshape(keys.shape) if isinstance(keys, np.ndarray) else found

    def __contains__(self, key) -> bool:
        return bool(self.contains_many([single_key(key, "`in`", "contains_many")])[0])

    def fpr_exact(self) -> float:
        """The expected false-positive rate now: 1 - prod(1 - the exact rate of each slice)."""
        return float(1.0 - np.prod([1.0 - s.fpr_exact() for s in self._slices]))

    def approx_count(self) -> float:
        return sum(s.approx_count() for s in self._slices)

    def merge(self, other: ScalableBloomFilter) -> ScalableBloomFilter:
        """Add the keys of ``other`` (built on another shard, say) to this filter (in
        place; returns self): slice i merges the other's slice i. A slice may then hold
        more keys than it was sized for, so the total rate can exceed ``fpr``:
        ``fpr_exact()`` tells by how much. ``a | b`` is a new filter, the operands unchanged."""
        if not isinstance(other, ScalableBloomFilter) or self._parameters() != other._parameters():
            raise ValueError("merge needs a ScalableBloomFilter with equal initial_capacity, fpr, growth, "
                             "tightening, kind and seed")
        for mine, theirs in zip(self._slices, other._slices):
            mine.merge(theirs)
        self._slices += [theirs._copy() for theirs in other._slices[len(self._slices):]]
        return self

    def __or__(self, other):
        return self._copy().merge(other) if isinstance(other, ScalableBloomFilter) else NotImplemented

    def _parameters(self) -> tuple:
        return self._initial_capacity, self._fpr, self._growth, self._tightening, self._kind, self._seed

    def _copy(self) -> ScalableBloomFilter:
        out = ScalableBloomFilter(*self._parameters())
        out._slices = [s._copy() for s in self._slices]
        return out

    # -- serialisation -------------------------------------------------
    def to_bytes(self) -> bytes:
        """A versioned header, each slice's own bytes (length-prefixed), and a CRC-32."""
        payload = b"".join(_SLICE_LENGTH.pack(len(b)) + b for b in (s.to_bytes() for s in self._slices))
        fields = (KINDS.index(self._kind), self._growth, self._tightening, self._fpr, int(self._seed),
                  len(self._slices), self._initial_capacity, len(payload))
        return _FORMAT.pack(fields, payload)

    @classmethod
    def from_bytes(cls, data) -> ScalableBloomFilter:
        fields, payload = _FORMAT.unpack(data, lambda f: (f[7], f"{f[5]} slices in {f[7]} bytes"))
        kind_code, growth, tightening, fpr, seed, num_slices, initial_capacity, _ = fields
        sbf = cls(initial_capacity, fpr, growth, tightening, KINDS[kind_code], seed)
        offset = 0
        for i in range(num_slices):
            if offset + _SLICE_LENGTH.size > len(payload):
                raise ValueError(f"corrupt data: the header names {num_slices} slices, the payload holds {i}")
            (length,) = _SLICE_LENGTH.unpack_from(payload, offset)
            piece = BloomFilter.from_bytes(payload[offset + 8:offset + 8 + length])
            expected = (initial_capacity * growth ** i, sbf.slice_fpr(i), sbf.kind, sbf.seed)
            if (piece.capacity, piece.fpr, piece.kind, piece.seed) != expected:
                raise ValueError(f"corrupt data: slice {i} does not match the header")
            sbf._slices.append(piece)
            offset += 8 + length
        if offset != len(payload):
            raise ValueError("corrupt data: bytes left over after the last slice")
        return sbf

    def __reduce__(self):
        return type(self).from_bytes, (self.to_bytes(),)

    def __eq__(self, other) -> bool:
        if not isinstance(other, ScalableBloomFilter):
            return NotImplemented
        return self.to_bytes() == other.to_bytes()

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        return (f"ScalableBloomFilter(initial_capacity={self._initial_capacity!r}, fpr={self._fpr!r}, "
                f"growth={self._growth!r}, tightening={self._tightening!r}, kind={self._kind!r}, "
                f"seed={self._seed!r}): {len(self._slices)} slices, {len(self)} keys added")
