"""Sharding: placement schemes with one interface, their measurements and theory lines,
and the hot-key remedies (salting, counter sharding, the power of two choices).

Every scheme maps a batch of keys to shard ids with ``place(keys)``, and changes its
shard set with ``add(shard)`` and ``remove(shard)``. Public functions and methods
check their arguments and allocate; the loops are numba kernels in
``_sharding_kernels`` (rule 6), and the rest is numpy.

Keys are 64-bit integers. ``place`` takes a 1-D numpy array of any integer dtype, a
list or tuple of ints, or a list or tuple of str/bytes (each turned into an integer by
``hash64(keys, seed=0)`` first). Signed keys are read as their 64-bit two's-complement
pattern, as ``hash64`` reads them: ``-1`` and ``2**64 - 1`` are the same key. Floats
(NaN included), bools and anything else are refused with a TypeError: a float key is
usually a bug, and ``1.0`` hashing apart from ``1`` would hide it.
"""
from __future__ import annotations

import copy
import functools
import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .. import _threads
from ..sketches import hash64
from . import _sharding_kernels as _kernels

_KEY_SPACE = 2**64
MAX_SHARD_ID = 2**31 - 1  # ring labels pack (shard << 32 | replica) into one uint64
MAX_VNODES = 2**16
MAX_RING_POINTS = 2**26  # 512 MiB of points, and point indices fit the ring's int32 index
_RING_INDEX_MAX_BITS = 24  # at most 64 MiB of index; past 2**23 points the scans lengthen
MAX_TABLE_SIZE = 2**31 - 1  # Maglev's (offset + j * skip) stays far inside int64
MAX_CHOICES = 16
MAX_SALTS = 1024
MAX_ZIPF_UNIVERSE = 2**24  # the inverse-CDF table takes 8 bytes a rank


# -- argument checks (each raises a one-line TypeError or ValueError) --------------

def _integer(name: str, value, low: int, high: int | None = None) -> int:
    """An int (not a bool) in [low, high]; ``high=None`` leaves the top open."""
    what = f"an int >= {low}" if high is None else f"an int in [{low}, {high}]"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {what}, got {value!r} ({type(value).__name__})")
    value = int(value)
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be {what}, got {value}")
    return value


def _seed(seed) -> int:
    return _integer("seed", seed, 0, _KEY_SPACE - 1)


def _positive_real(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a positive real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite real number, got {value!r}")
    return value


def _shard_id(shard) -> int:
    return _integer("shard", shard, 0, MAX_SHARD_ID)


def _shard_ids(shards) -> np.ndarray:
    """Sorted int64 shard ids from a count n (ids 0..n-1) or a sequence of distinct ids."""
    if isinstance(shards, numbers.Integral) and not isinstance(shards, bool):
        return np.arange(_integer("shards", shards, 1, MAX_SHARD_ID + 1), dtype=np.int64)
    if isinstance(shards, (str, bytes, bool)) or not isinstance(shards, Iterable):
        raise TypeError("shards must be a count (an int >= 1) or a sequence of distinct shard ids, "
                        f"got {shards!r} ({type(shards).__name__})")
    ids = [_shard_id(s) for s in shards]
    if not ids:
        raise ValueError("shards must name at least one shard, got an empty sequence")
    if len(set(ids)) < len(ids):
        seen = set()
        twice = next(s for s in ids if s in seen or seen.add(s))
        raise ValueError(f"shard ids must be distinct, got {twice} more than once")
    return np.array(sorted(ids), dtype=np.int64)


def _describe(ids: np.ndarray) -> str:
    if len(ids) <= 8:
        return f"shards {ids.tolist()}"
    return f"{len(ids)} shards with ids {ids[0]}..{ids[-1]}"


def _as_keys(keys, name: str = "keys") -> np.ndarray:
    """A C-contiguous 1-D uint64 array of the keys (see the module docstring)."""
    if isinstance(keys, (list, tuple)):
        textual = {isinstance(k, (str, bytes, bytearray)) for k in keys}
        if textual == {True}:
            return hash64(list(keys))
        if textual == {True, False}:
            raise TypeError(f"{name} mix str/bytes with other types: give integers or strings, not both")
        return _int_list_as_keys(keys, name)
    if not isinstance(keys, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, list or tuple of integer (or str/bytes) keys, "
                        f"got {type(keys).__name__}")
    if keys.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {keys.shape}")
    kind = keys.dtype.kind
    if kind == "u":
        return np.ascontiguousarray(keys, dtype=np.uint64)
    if kind == "i":
        return np.ascontiguousarray(keys, dtype=np.int64).view(np.uint64)
    if kind in "US":
        return hash64(keys)
    if kind == "O":
        return _as_keys(keys.tolist(), name)
    hint = " (whole numbers: convert with .astype(np.uint64))" if kind == "f" else ""
    raise TypeError(f"{name} must have an integer dtype (or be str/bytes), got {keys.dtype}{hint}")


def _int_list_as_keys(keys: list, name: str) -> np.ndarray:
    """Python or numpy integers as their 64-bit two's-complement patterns."""
    for key in keys:
        if isinstance(key, (bool, np.bool_)) or not isinstance(key, numbers.Integral):
            raise TypeError(f"{name} must be integers (or all str/bytes), got {key!r} ({type(key).__name__})")
    try:
        return np.array(keys, dtype=np.int64).view(np.uint64)
    except OverflowError:
        pass  # some key is >= 2**63, or out of range altogether
    too_big = next((k for k in keys if not -2**63 <= k < _KEY_SPACE), None)
    if too_big is not None:
        raise ValueError(f"{name} must be integers in [-2**63, 2**64), got {too_big}")
    return np.array([int(k) % _KEY_SPACE for k in keys], dtype=np.uint64)


def _is_prime(n: int) -> bool:
    if n < 4:
        return n >= 2
    if n % 2 == 0:
        return False
    return all(n % d for d in range(3, math.isqrt(n) + 1, 2))


# -- the schemes ------------------------------------------------------------------

class ShardingScheme:
    """The interface every scheme shares.

    ``place(keys)`` returns an int64 array of shard ids, one per key, in one
    vectorised call. ``add(shard)`` and ``remove(shard)`` change the shard set in
    place (and return the scheme); ``copy()`` gives an independent scheme, so a
    resize can be measured without touching the original. ``shards`` is the sorted
    array of live shard ids, ``memory_bytes`` the bytes of the arrays the scheme keeps.
    """

    def __init__(self, shards):
        self._shards = _shard_ids(shards)

    @property
    def shards(self) -> np.ndarray:
        """The live shard ids, sorted (a read-only view)."""
        view = self._shards.view()
        view.flags.writeable = False
        return view

    @property
    def n_shards(self) -> int:
        return len(self._shards)

    @property
    def memory_bytes(self) -> int:
        """Bytes held by the scheme's arrays (the shard ids included)."""
        return sum(a.nbytes for a in (self._shards, *self._state()))

    def place(self, keys) -> np.ndarray:
        """The shard id of each key, as an int64 array of the same length."""
        return self._place(_as_keys(keys))

    def add(self, shard: int) -> ShardingScheme:
        """Add a shard with a new id; returns the scheme."""
        shard = _shard_id(shard)
        if shard in self._shards:
            raise ValueError(f"shard {shard} is already placed on ({_describe(self._shards)})")
        self._check_can_hold(len(self._shards) + 1)
        self._shards = np.insert(self._shards, np.searchsorted(self._shards, shard), shard)
        self._added(shard)
        return self

    def remove(self, shard: int) -> ShardingScheme:
        """Remove a live shard (never the last one); returns the scheme."""
        shard = _shard_id(shard)
        if shard not in self._shards:
            raise ValueError(f"shard {shard} is not placed on ({_describe(self._shards)})")
        if len(self._shards) == 1:
            raise ValueError(f"cannot remove shard {shard}: it is the last one, and keys need a shard")
        self._shards = self._shards[self._shards != shard]
        self._removed(shard)
        return self

    def copy(self) -> ShardingScheme:
        return copy.deepcopy(self)

    def __repr__(self) -> str:
        params = "".join(f", {name}={value!r}" for name, value in self._params().items())
        return f"{type(self).__name__}(shards={self._shards.tolist()!r}{params})"

    # -- what each scheme provides -------------------------------------------
    def _place(self, keys: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _added(self, shard: int) -> None:
        """Update the derived state after ``shard`` joined ``_shards``."""

    def _removed(self, shard: int) -> None:
        """Update the derived state after ``shard`` left ``_shards``."""

    def _check_can_hold(self, n_shards: int) -> None:
        """Refuse, before any change, a shard count the scheme cannot have."""

    def _state(self) -> tuple[np.ndarray, ...]:
        return ()

    def _params(self) -> dict:
        return {}


class _Seeded(ShardingScheme):
    """A scheme that hashes keys with ``hash64(keys, seed)``.

    Shard-side hashes (ring points, rendezvous weights, Maglev's offsets and skips)
    use a second seed drawn from the first: with one seed, the key equal to a
    shard's label would hash onto that shard's own point, so small integer keys
    would all crowd onto shard 0's points of a ring.
    """

    def __init__(self, shards, seed: int = 0):
        super().__init__(shards)
        self._seed = _seed(seed)
        self._shard_seed = int(hash64(np.uint64(self._seed), self._seed))

    seed = property(lambda self: self._seed, doc="Hash seed: schemes with equal parameters and seed agree.")

    def _hashes(self, keys: np.ndarray) -> np.ndarray:
        return hash64(keys, self._seed)

    def _shard_hashes(self, labels: np.ndarray) -> np.ndarray:
        return hash64(labels, self._shard_seed)

    def _params(self) -> dict:
        return {"seed": self._seed}


class RangeSharding(ShardingScheme):
    """Contiguous ranges of the raw key space [0, 2**64), one per shard.

    Keys are not hashed, so neighbouring keys share a shard (range scans stay on one
    shard) and skewed keys give skewed loads: sequential ids 0, 1, 2, ... all land in
    the first range. n shards start with n equal ranges. ``add`` splits the widest
    range in half and gives the upper half to the new shard; ``remove`` merges the
    shard's range into its narrower neighbour. Both move only the keys they must
    (monotone), but a split leaves two half-width ranges, so balance drifts with
    resizes. There is nothing to seed.
    """

    def __init__(self, shards):
        super().__init__(shards)
        n = len(self._shards)
        self._lower = np.array([i * _KEY_SPACE // n for i in range(n)], dtype=np.uint64)
        self._owners = self._shards.copy()

    @property
    def split_points(self) -> np.ndarray:
        """The lower bound of each range, in key order (the first is 0)."""
        return self._lower.copy()

    @property
    def range_owners(self) -> np.ndarray:
        """The shard id of each range, in key order."""
        return self._owners.copy()

    def _widths(self) -> list[int]:
        lower = [int(b) for b in self._lower]
        return [hi - lo for lo, hi in zip(lower, lower[1:] + [_KEY_SPACE])]

    def _place(self, keys):
        return self._owners[np.searchsorted(self._lower, keys, side="right") - 1]

    def _added(self, shard):
        widths = self._widths()
        widest = widths.index(max(widths))
        middle = int(self._lower[widest]) + widths[widest] // 2
        self._lower = np.insert(self._lower, widest + 1, np.uint64(middle))
        self._owners = np.insert(self._owners, widest + 1, shard)

    def _removed(self, shard):
        i = int(np.flatnonzero(self._owners == shard)[0])
        widths = self._widths()
        has_right = i + 1 < len(widths)
        if i > 0 and (not has_right or widths[i - 1] <= widths[i + 1]):
            self._lower = np.delete(self._lower, i)  # the left neighbour reaches up over range i
        else:
            self._lower = np.delete(self._lower, i + 1)  # the right neighbour reaches down
        self._owners = np.delete(self._owners, i)

    def _state(self):
        return self._lower, self._owners


class ModuloSharding(_Seeded):
    """``shards[hash(key) mod N]``: perfectly even in expectation, but a change of N
    moves about N/(N+1) of the keys on add (not 1/(N+1)), and most keys on remove."""

    def _place(self, keys):
        return self._shards[self._hashes(keys) % np.uint64(len(self._shards))]


class ConsistentHashRing(_Seeded):
    """Karger et al.'s consistent hashing with virtual nodes (Dynamo's ring).

    Each shard puts ``vnodes`` points on a ring of 2**64 positions (the hashes of
    ``shard << 32 | replica``); a key goes to the shard of the first point at or after
    its own hash, wrapping past the top. Rather than a binary search over the sorted
    points (cache misses at every step: 10-15x slower), the lookup reads the first
    point of the key's bucket from an index of the hash's top b bits, with 2**b
    between 2 and 4 times the points, then scans forward (under one point on average).
    Adding or removing a shard moves only the keys of the arcs its points take or
    free, so the scheme is monotone; each shard's share of the ring has std/mean
    ``ring_load_cv(N, vnodes)``, about 1/sqrt(vnodes).
    """

    def __init__(self, shards, vnodes: int = 100, seed: int = 0):
        super().__init__(shards, seed)
        self._vnodes = _integer("vnodes", vnodes, 1, MAX_VNODES)
        self._check_can_hold(len(self._shards))
        self._set_ring(*self._points_of(self._shards))

    vnodes = property(lambda self: self._vnodes, doc="Ring points (virtual nodes) per shard.")

    @property
    def points(self) -> np.ndarray:
        """The ring points, sorted (uint64)."""
        return self._points[:-1].copy()

    @property
    def point_owners(self) -> np.ndarray:
        """The shard id of each ring point, in ring order."""
        return self._owners[:-1].copy()

    def _points_of(self, shards: np.ndarray):
        labels = (shards.astype(np.uint64)[:, None] << np.uint64(32)) | np.arange(self._vnodes, dtype=np.uint64)
        return self._shard_hashes(labels.ravel()), np.repeat(shards, self._vnodes)

    def _check_can_hold(self, n_shards):
        if n_shards * self._vnodes > MAX_RING_POINTS:
            raise ValueError(f"{n_shards} shards x {self._vnodes} vnodes exceed the {MAX_RING_POINTS} ring points "
                             "a ring may have: use fewer vnodes")

    def _set_ring(self, points: np.ndarray, owners: np.ndarray) -> None:
        # Sorting on (point, owner) makes the ring a function of the shard set alone,
        # however it was reached, even if two points collide.
        order = np.lexsort((owners, points))
        points = points[order]
        bits = min(_RING_INDEX_MAX_BITS, max(1, math.ceil(math.log2(len(points))) + 1))
        self._shift = np.uint64(64 - bits)
        bucket_starts = np.arange(2**bits, dtype=np.uint64) << self._shift
        self._index = np.searchsorted(points, bucket_starts, side="left").astype(np.int32)
        # The sentinel stops the lookup's scan; its owner, the first point's, wraps the ring.
        self._points = np.append(points, np.uint64(_KEY_SPACE - 1))
        self._owners = np.append(owners[order], owners[order[0]])

    def _place(self, keys):
        out = np.empty(len(keys), dtype=np.int64)
        # A lookup costs about one hash: _threads counts work in hashes.
        _threads.run((_kernels.ring_owners, _kernels.ring_owners_parallel), len(keys),
                     self._hashes(keys), self._points, self._index, self._shift, self._owners, out)
        return out

    def _added(self, shard):
        points, owners = self._points_of(np.array([shard], dtype=np.int64))
        self._set_ring(np.concatenate([self._points[:-1], points]), np.concatenate([self._owners[:-1], owners]))

    def _removed(self, shard):
        keep = self._owners[:-1] != shard
        self._set_ring(self._points[:-1][keep], self._owners[:-1][keep])

    def _state(self):
        return self._points, self._owners, self._index

    def _params(self):
        return {"vnodes": self._vnodes, "seed": self._seed}


class JumpHash(_Seeded):
    """Lamping & Veach's jump consistent hash (2014): no stored ring, O(log N) steps a key.

    Jump hash maps a key to a bucket in [0, n) such that growing n to n + 1 moves
    exactly the keys that go to the new bucket (1/(n+1) of them). Buckets are numbered,
    so ``buckets`` names the shard of each one: ``add`` appends a bucket, and removing
    the shard of the last bucket pops it, the exact inverse, moving only its keys.

    Jump hash cannot drop a bucket in the middle. Removing any other shard moves the
    last bucket's shard into the freed bucket, then pops the last bucket: the removed
    shard's keys all go to that one shard, and the last bucket's keys spread over the
    rest as in a shrink. About 2/N of the keys move instead of 1/N, and keys leave a
    shard that was not removed, so such a removal is not monotone.
    """

    def __init__(self, shards, seed: int = 0):
        super().__init__(shards, seed)
        self._buckets = self._shards.copy()

    @property
    def buckets(self) -> np.ndarray:
        """The shard id of each bucket, in bucket order."""
        return self._buckets.copy()

    def _place(self, keys):
        out = np.empty(len(keys), dtype=np.int64)
        # About ln N + 1 steps a key, each about one hash of work (what _threads counts).
        work = len(keys) * (1 + math.ceil(math.log(len(self._buckets))))
        _threads.run((_kernels.jump_shards, _kernels.jump_shards_parallel), work,
                     self._hashes(keys), self._buckets, out)
        return out

    def _added(self, shard):
        self._buckets = np.append(self._buckets, shard)

    def _removed(self, shard):
        i = int(np.flatnonzero(self._buckets == shard)[0])
        self._buckets[i] = self._buckets[-1]
        self._buckets = self._buckets[:-1].copy()

    def _state(self):
        return (self._buckets,)


class RendezvousHashing(_Seeded):
    """Thaler & Ravishankar's highest random weight (1998): each key scores every shard
    with ``hash(key, shard)`` and goes to the highest. A key moves only when its winner
    leaves or a new shard outscores it, so the scheme is monotone and exactly balanced
    in expectation, at O(N) work a key."""

    def __init__(self, shards, seed: int = 0):
        super().__init__(shards, seed)
        self._shard_keys = self._shard_hashes(self._shards)

    def _place(self, keys):
        out = np.empty(len(keys), dtype=np.int64)
        # One score, a keyed hash, per key and shard: the work _threads counts in hashes.
        _threads.run((_kernels.rendezvous_winners, _kernels.rendezvous_winners_parallel), len(keys) * len(self._shards),
                     self._hashes(keys), self._shard_keys, self._shards, out)
        return out

    def _added(self, shard):
        self._shard_keys = self._shard_hashes(self._shards)

    _removed = _added

    def _state(self):
        return (self._shard_keys,)


class MaglevHashing(_Seeded):
    """Google's Maglev hashing (Eisenbud et al., NSDI 2016): a lookup table of prime
    size M filled by the shards' permutations in turn, so each shard owns M/N slots to
    within one, and a key's shard is ``table[hash(key) mod M]``.

    A resize re-populates the table. The paper promises near-minimal disruption, not
    monotonicity: a few slots of other shards change hands too, fewer as M/N grows
    (the paper takes M > 100 N; 65537 is its default).
    """

    def __init__(self, shards, table_size: int = 65537, seed: int = 0):
        super().__init__(shards, seed)
        size = _integer("table_size", table_size, 2, MAX_TABLE_SIZE)
        if not _is_prime(size):
            above = next(n for n in range(size + 1, 2 * size + 2) if _is_prime(n))
            raise ValueError(f"table_size must be a prime (each shard's slot sequence must visit every slot), "
                             f"got {size}; the next prime is {above}")
        self._table_size = size
        self._check_can_hold(len(self._shards))
        self._populate()

    table_size = property(lambda self: self._table_size, doc="M, the number of lookup-table slots (a prime).")

    @property
    def table(self) -> np.ndarray:
        """The shard id of each slot."""
        return self._table.copy()

    def _check_can_hold(self, n_shards):
        if n_shards > self._table_size:
            raise ValueError(f"{n_shards} shards do not fit a table of {self._table_size} slots: "
                             "make table_size a prime above 100 x the shard count")

    def _populate(self) -> None:
        m = np.uint64(self._table_size)
        first = self._shard_hashes(self._shards)
        offsets = (first % m).astype(np.int64)
        skips = (self._shard_hashes(first) % (m - np.uint64(1)) + np.uint64(1)).astype(np.int64)
        slots = np.empty(self._table_size, dtype=np.int64)
        _kernels.maglev_populate(offsets, skips, np.zeros(len(self._shards), dtype=np.int64), slots)
        self._table = self._shards[slots]

    def _place(self, keys):
        return self._table[self._hashes(keys) % np.uint64(self._table_size)]

    def _added(self, shard):
        self._populate()

    _removed = _added

    def _state(self):
        return (self._table,)

    def _params(self):
        return {"table_size": self._table_size, "seed": self._seed}


class BoundedLoadConsistentHashing(ConsistentHashRing):
    """Consistent hashing with bounded loads (Mirrokni, Thorup & Zadimoghaddam, SODA 2018).

    The ring of ``ConsistentHashRing`` (the same points for the same parameters), with
    a capacity per shard of ``ceil((1 + eps) * K / N)`` for a batch of K keys: a key
    whose shard is full walks clockwise to the next point whose shard is not. So no
    shard holds more than the capacity, and max/mean <= 1 + eps plus one key's rounding.

    ``place`` therefore places the batch jointly, as a stream in array order (each
    occurrence of a repeated key is one more unit of load): a key's shard depends on
    the keys before it in the batch, not on the key alone. The paper bounds the keys a
    resize moves by O(1/eps^2) times the minimum in expectation; it is not monotone.
    """

    def __init__(self, shards, vnodes: int = 100, eps: float = 0.25, seed: int = 0):
        self._eps = _positive_real("eps", eps)
        super().__init__(shards, vnodes, seed)

    eps = property(lambda self: self._eps, doc="The load bound's slack: capacity ceil((1 + eps) K / N).")

    def capacity(self, n_keys: int) -> int:
        """The most keys one shard takes in a batch of ``n_keys``."""
        n_keys = _integer("n_keys", n_keys, 0)
        return math.ceil((1.0 + self._eps) * n_keys / len(self._shards))

    def _set_ring(self, points, owners):
        super()._set_ring(points, owners)
        self._owner_index = np.searchsorted(self._shards, self._owners[:-1])

    def _place(self, keys):
        starts = np.empty(len(keys), dtype=np.int64)
        _kernels.ring_successors(self._hashes(keys), self._points, self._index, self._shift, starts)
        out = np.empty(len(keys), dtype=np.int64)
        loads = np.zeros(len(self._shards), dtype=np.int64)
        _kernels.bounded_load_walk(starts, self._owner_index, self.capacity(len(keys)), loads, out)
        return self._shards[out]

    def _state(self):
        return self._points, self._owners, self._index, self._owner_index

    def _params(self):
        return {"vnodes": self._vnodes, "eps": self._eps, "seed": self._seed}


# -- measurements -----------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class LoadBalance:
    """Keys per shard, as the SUPSI benchmark reports balance (min, max, spread over the mean)."""

    shards: np.ndarray
    loads: np.ndarray  # keys on each shard, aligned with ``shards``
    mean: float
    std_over_mean: float  # population std (ddof=0) / mean
    max_over_mean: float
    min_over_mean: float


@dataclass(frozen=True)
class KeysMoved:
    """What one resize moved, as fractions of all keys."""

    change: str  # "add" or "remove"
    shard: int
    n_shards: int  # before the change
    moved: float
    ideal: float  # 1/(N+1) on add, 1/N on remove: what a perfectly balanced scheme must move
    not_monotone: float  # moved but not to the added shard / not from the removed one

    @property
    def moved_over_ideal(self) -> float:
        return self.moved / self.ideal


@dataclass(frozen=True)
class Monotonicity:
    """The SUPSI suite's monotonicity benchmark: remove the highest ``removed`` shard ids,
    then add them back in ascending order; fractions of all keys."""

    removed: tuple[int, ...]
    keys_on_removed: float  # on the removed shards before the removal (all must move)
    moved_from_removed: float
    moved_from_others: float  # moved off a shard that stayed: 0 for a monotone scheme
    moved_to_restored: float
    moved_to_others: float  # on restore, moved to a shard that was not restored: 0 if monotone
    relocated_after_restore: float  # on a different shard than before the removal


def load_balance(scheme: ShardingScheme, keys) -> LoadBalance:
    """How evenly ``scheme`` spreads ``keys`` (at least one) over its shards."""
    _check_scheme(scheme)
    keys = _as_keys(keys)
    if len(keys) == 0:
        raise ValueError("load_balance needs at least one key")
    shards = scheme.shards.copy()
    loads = np.bincount(scheme.place(keys), minlength=int(shards[-1]) + 1)[shards]
    mean = len(keys) / len(shards)
    return LoadBalance(shards, loads, mean, float(loads.std()) / mean,
                       float(loads.max()) / mean, float(loads.min()) / mean)


def keys_moved(scheme: ShardingScheme, keys, change: str = "add", shard: int | None = None) -> KeysMoved:
    """Keys that change shard when one shard is added to (or removed from) a copy of
    ``scheme``; ``scheme`` is untouched. By default add takes the next free id above
    the highest, and remove takes the highest id (as the SUPSI suite removes)."""
    _check_scheme(scheme)
    ideal = ideal_moved_fraction(scheme.n_shards, change)
    keys = _as_keys(keys)
    if len(keys) == 0:
        raise ValueError("keys_moved needs at least one key")
    if shard is None:
        shard = int(scheme.shards[-1]) + 1 if change == "add" else int(scheme.shards[-1])
    resized = scheme.copy()
    (resized.add if change == "add" else resized.remove)(shard)  # refuses a bad shard before any placing
    before, after = scheme.place(keys), resized.place(keys)
    moved = before != after
    must = (after == shard) if change == "add" else (before == shard)
    return KeysMoved(change, int(shard), scheme.n_shards, float(moved.mean()), ideal, float((moved & ~must).mean()))


def monotonicity(scheme: ShardingScheme, keys, fraction: float = 0.1) -> Monotonicity:
    """The SUPSI suite's monotonicity benchmark on a copy of ``scheme``: remove the
    highest floor(fraction * N) shard ids (at least one, never all), then add them back
    in ascending order, and count which keys moved where."""
    _check_scheme(scheme)
    fraction = _positive_real("fraction", fraction)
    if fraction >= 1:
        raise ValueError(f"fraction must be below 1 (some shards must stay), got {fraction}")
    keys = _as_keys(keys)
    if len(keys) == 0:
        raise ValueError("monotonicity needs at least one key")
    ids = scheme.shards
    if len(ids) < 2:
        raise ValueError("monotonicity needs a scheme with at least two shards")
    count = min(max(1, int(fraction * len(ids))), len(ids) - 1)
    removed = ids[::-1][:count].tolist()
    resized = scheme.copy()
    initial = resized.place(keys)
    for shard in removed:
        resized.remove(shard)
    shrunk = resized.place(keys)
    for shard in reversed(removed):
        resized.add(shard)
    restored = resized.place(keys)
    was_removed = np.isin(initial, removed)
    lost, gained = initial != shrunk, shrunk != restored
    to_restored = np.isin(restored, removed)
    return Monotonicity(tuple(removed), float(was_removed.mean()), float((lost & was_removed).mean()),
                        float((lost & ~was_removed).mean()), float((gained & to_restored).mean()),
                        float((gained & ~to_restored).mean()), float((initial != restored).mean()))


def _check_scheme(scheme) -> None:
    if not isinstance(scheme, ShardingScheme):
        raise TypeError(f"scheme must be a ShardingScheme (RangeSharding, ConsistentHashRing, ...), "
                        f"got {type(scheme).__name__}")


# -- theory lines -----------------------------------------------------------------

def ideal_moved_fraction(n_shards: int, change: str = "add") -> float:
    """The least a balanced scheme of ``n_shards`` can move: 1/(N+1) of the keys when a
    shard joins (the newcomer's share), 1/N when one leaves (the leaver's)."""
    n = _integer("n_shards", n_shards, 1)
    if change not in ("add", "remove"):
        raise ValueError(f"change must be 'add' or 'remove', got {change!r}")
    return 1 / (n + 1) if change == "add" else 1 / n


def ring_load_cv(n_shards: int, vnodes: int, n_keys: int | None = None) -> float:
    """Root-mean-square std/mean of the keys per shard on a consistent hash ring.

    The N v ring points fall uniformly, so the arcs between neighbours are the uniform
    spacings, jointly Dirichlet(1, ..., 1) (Pyke, "Spacings", JRSS B 27, 1965). A
    shard's share p of the ring is the sum of v of them: Beta(v, (N - 1) v), so
    N^2 Var(p) = (N - 1) / (N v + 1), about 1/v. Keys then fall binomially on the
    shares; with K keys, E[(std/mean)^2] = (N - 1)/K + (1 - 1/K) (N - 1)/(N v + 1) for
    the population std over the shards (whose mean is exactly K/N). ``n_keys=None``
    gives the share term alone, sqrt((N - 1)/(N v + 1)): the 1/sqrt(v) line.
    """
    n = _integer("n_shards", n_shards, 1)
    v = _integer("vnodes", vnodes, 1)
    shares = (n - 1) / (n * v + 1)
    if n_keys is None:
        return math.sqrt(shares)
    k = _integer("n_keys", n_keys, 1)
    return math.sqrt((n - 1) / k + (1 - 1 / k) * shares)


def uniform_load_cv(n_shards: int, n_keys: int) -> float:
    """Root-mean-square std/mean of the keys per shard when each key picks one of N
    shards uniformly (modulo, jump, rendezvous; Maglev to within a slot): the
    multinomial's sqrt((N - 1)/K)."""
    n = _integer("n_shards", n_shards, 1)
    k = _integer("n_keys", n_keys, 1)
    return math.sqrt((n - 1) / k)


# -- hot keys ---------------------------------------------------------------------

def zipf_keys(n: int, skew: float, universe: int, seed: int = 0) -> np.ndarray:
    """``n`` keys drawn from ranks 0..universe-1 with P(rank r) proportional to
    (r + 1)^-skew: rank 0 is the hottest; skew 0 is uniform, around 1 is web-like.
    Returns uint64 ranks (hashed schemes hash them; range sharding sees them as they are)."""
    n = _integer("n", n, 0)
    if isinstance(skew, bool) or not isinstance(skew, numbers.Real):
        raise TypeError(f"skew must be a real number >= 0, got {skew!r} ({type(skew).__name__})")
    if not (math.isfinite(skew) and skew >= 0):
        raise ValueError(f"skew must be a finite real number >= 0, got {skew!r}")
    universe = _integer("universe", universe, 1, MAX_ZIPF_UNIVERSE)
    rng = np.random.default_rng(_seed(seed))
    cdf = _zipf_cdf(universe, float(skew))
    draws = rng.random(n) * cdf[-1]
    # searched in sorted order (each search starts near the last): 2.7x faster over a
    # million ranks, where random order missed the cache at every step; the same ranks
    order = np.argsort(draws)
    ranks = np.empty(n, dtype=np.uint64)
    ranks[order] = np.minimum(np.searchsorted(cdf, draws[order], side="right"), universe - 1)
    return ranks


@functools.lru_cache(maxsize=2)
def _zipf_cdf(universe: int, skew: float) -> np.ndarray:
    """The unnormalised CDF of ranks 0..universe-1 (read-only: it is shared)."""
    cdf = np.cumsum(np.arange(1, universe + 1, dtype=np.float64) ** -skew)
    cdf.flags.writeable = False
    return cdf


def hottest(keys, k: int) -> np.ndarray:
    """The ``k`` most frequent keys (uint64), most frequent first; ties by key."""
    keys = _as_keys(keys)
    k = _integer("k", k, 0)
    values, counts = np.unique(keys, return_counts=True)
    return values[np.lexsort((values, -counts))][:k]


def salt_variants(keys, salts: int) -> np.ndarray:
    """The ``salts`` sub-keys of each key (uint64, shape len(keys) x salts): sub-key j of
    k is ``hash64(k, seed=j)``, the same in every process, so readers can find them."""
    keys = _as_keys(keys)
    salts = _integer("salts", salts, 1, MAX_SALTS)
    variants = np.empty((len(keys), salts), dtype=np.uint64)
    for j in range(salts):
        variants[:, j] = hash64(keys, j)
    return variants


def salt_keys(keys, hot, salts: int, seed: int = 0) -> np.ndarray:
    """``keys`` (uint64) with each occurrence of a ``hot`` key replaced by one of its
    ``salts`` sub-keys (``salt_variants``), picked at random: a hot key's writes spread
    over up to ``salts`` shards, and a read of it fans in to all of its sub-keys."""
    keys = _as_keys(keys)
    hot = np.unique(_as_keys(hot, "hot"))
    salts = _integer("salts", salts, 1, MAX_SALTS)
    rng = np.random.default_rng(_seed(seed))
    out = keys.copy()
    which = np.flatnonzero(np.isin(keys, hot))
    variants = salt_variants(hot, salts)
    out[which] = variants[np.searchsorted(hot, keys[which]), rng.integers(0, salts, size=len(which))]
    return out


class ShardedCounter:
    """A hot counter (the "like counter") kept as ``subcounters`` sub-counters.

    Each increment goes to a sub-counter picked at random, so writes to one hot key
    spread over up to ``subcounters`` shards; reading the value sums them all, so a
    read fans in to ``subcounters`` sub-keys. Sub-counter j lives under
    ``salt_variants([key], subcounters)[0, j]`` (``keys``).
    """

    def __init__(self, subcounters: int, key=0, seed: int = 0):
        subcounters = _integer("subcounters", subcounters, 1, MAX_SALTS)
        self._keys = salt_variants([key], subcounters)[0]
        self._counts = np.zeros(subcounters, dtype=np.int64)
        self._rng = np.random.default_rng(_seed(seed))

    @property
    def keys(self) -> np.ndarray:
        """The sub-counters' keys (uint64)."""
        return self._keys.copy()

    @property
    def counts(self) -> np.ndarray:
        """Increments held by each sub-counter."""
        return self._counts.copy()

    @property
    def value(self) -> int:
        """The counter: the sum of every sub-counter (one read per sub-counter)."""
        return int(self._counts.sum())

    @property
    def reads_per_value(self) -> int:
        return len(self._counts)

    def increment(self, n: int = 1) -> None:
        """``n`` increments, each to a uniformly random sub-counter."""
        n = _integer("n", n, 0)
        self._counts += self._rng.multinomial(n, np.full(len(self._counts), 1 / len(self._counts)))

    def writes_by_shard(self, scheme: ShardingScheme) -> np.ndarray:
        """Increments landing on each of ``scheme.shards`` when ``scheme`` places the sub-counters."""
        _check_scheme(scheme)
        shards = scheme.shards
        writes = np.zeros(len(shards), dtype=np.int64)
        np.add.at(writes, np.searchsorted(shards, scheme.place(self._keys)), self._counts)
        return writes


def power_of_two_choices(keys, shards, choices: int = 2, seed: int = 0) -> np.ndarray:
    """Place a stream of keys, in array order, each on the least loaded of ``choices``
    shards picked by independent hashes of the key (Azar, Broder, Karlin & Upfal 1994).
    With K keys on N shards the max load exceeds the mean K/N by about
    ln ln N / ln d + O(1) (Berenbrink, Czumaj, Steger & Vöcking 2000), against
    sqrt(2 (K/N) ln N) for one choice (Raab & Steger 1998, for K >> N ln N). Each
    occurrence of a key is one unit of load, so a hot key's occurrences split between
    its candidates. ``choices=1`` is plain hashing, for comparison. Returns int64 shard ids."""
    ids = _shard_ids(shards)
    keys = _as_keys(keys)
    choices = _integer("choices", choices, 1, MAX_CHOICES)
    n = np.uint64(len(ids))
    choice_seeds = hash64(np.arange(choices, dtype=np.uint64), _seed(seed))
    candidates = np.empty((len(keys), choices), dtype=np.int64)
    for c, choice_seed in enumerate(choice_seeds):
        candidates[:, c] = hash64(keys, int(choice_seed)) % n
    out = np.empty(len(keys), dtype=np.int64)
    _kernels.least_loaded_choice(candidates, np.zeros(len(ids), dtype=np.int64), out)
    return ids[out]
