"""``CountMinSketch``: frequency estimates of a stream in eps-sized error, and ``TopK``."""
from __future__ import annotations

import math

import numpy as np

from .. import _threads
from . import _countmin_kernels
from ._format import ByteFormat
from ._hashing import SEED, hash_keys, key_batch, single_key
from ._validation import COUNT, Boolean, Integer, OpenInterval, validate

_ADD_KERNELS = (_countmin_kernels.add, _countmin_kernels.add_parallel)
_ESTIMATE_KERNELS = (_countmin_kernels.estimate, _countmin_kernels.estimate_parallel)
_INT64_MAX = 2**63 - 1
# 2**40 int64 counters are 8 TiB: beyond any machine, and far from overflowing the
# kernels' uint64 index arithmetic.
_MAXCOUNTERS = 2**40
_PHI = OpenInterval(0.0, 1.0)

_PARAMETER_CONSTRAINTS = {
    "eps": OpenInterval(0.0, 1.0),
    "delta": OpenInterval(0.0, 1.0),
    "seed": SEED,
    "conservative": Boolean(),
}
# Serialised form (``_format``): the header fields, then the counters row by row
# (little-endian int64). Width and depth must be those eps and delta give.
_FORMAT = ByteFormat(b"MLSXCMSK", 1, "CountMinSketch", {
    "conservative": ("B", Integer(low=0, high=2)),
    "width": ("Q", Integer(low=1)),
    "depth": ("Q", Integer(low=1)),
    "seed": ("Q", SEED),
    "eps": ("d", _PARAMETER_CONSTRAINTS["eps"]),
    "delta": ("d", _PARAMETER_CONSTRAINTS["delta"]),
    "total": ("Q", COUNT),
})


def _width(eps: float) -> int:
    return math.ceil(math.e / eps)


def _depth(delta: float) -> int:
    return math.ceil(math.log(1 / delta))


class CountMinSketch:
    """Approximate counts of the keys of a stream, in memory that does not grow with it.

    ``CountMinSketch(eps, delta)`` keeps d = ceil(ln 1/delta) rows of w = ceil(e/eps)
    counters. Adding a key with a count adds the count to one counter per row, chosen
    by the row's own hash of the key; the estimate is the smallest of the key's d
    counters. It never underestimates, and for each key, with probability at least
    1 - delta, it overestimates by at most ``error_bound()`` = eps * N, where N is
    ``total``, the sum of all counts added (each row's error is at most N/w on
    average, so at most eps*N with probability >= 1 - 1/e by Markov, and the rows
    are independent).

    ``conservative=True`` (Estan and Varghese's conservative update) raises a key's
    counters only as far as its new estimate requires: every estimate is then at
    most what plain update gives on the same stream, and often much closer, still
    never below the true count. In both modes counts are non-negative (the
    cash-register model: no deletions), which conservative update relies on.

    Keys are those ``hash64`` accepts: integers, floats, str and bytes, one at a time
    (``add``, ``estimate``, ``sk[key]``) or as a numpy array, list or tuple
    (``add_many``, ``estimate_many``). Hashes depend only on the key and ``seed``, so
    sketches built in different processes with the same parameters merge:
    ``a.merge(b)`` adds b's stream to a (in place), ``a | b`` is a new sketch of both.
    Counters are int64: a total beyond 2**63 - 1 is refused, far past lab sizes.
    Serialise with ``to_bytes``/``from_bytes`` or pickle.

    Not thread-safe for adds from several Python threads at once; each plain batch is
    itself spread over numba's threads (conservative batches run on one).
    """

    _parameter_constraints = _PARAMETER_CONSTRAINTS

    def __init__(self, eps: float, delta: float, seed: int = 0, conservative: bool = False):
        checked = validate(self._parameter_constraints,
                           eps=eps, delta=delta, seed=seed, conservative=conservative)
        width, depth = _width(checked["eps"]), _depth(checked["delta"])
        if width * depth > _MAXCOUNTERS:
            raise ValueError(f"eps={eps} and delta={delta} need {depth} x {width} counters, more than the "
                             f"{_MAXCOUNTERS} (2**40) a sketch may have: raise eps or delta")
        self._eps, self._delta, self._seed, self._conservative = eps, delta, seed, conservative
        self._set_state(np.zeros((depth, width), dtype=np.int64), total=0)

    def _set_state(self, counters: np.ndarray, total: int) -> None:
        """The derived state (``_seed`` is set)."""
        self._counters, self._total = counters, total
        self._row_keys = np.empty(counters.shape[0], dtype=np.uint64)
        _countmin_kernels.make_row_keys(np.uint64(self._seed), self._row_keys)

    # -- parameters and derived sizes ----------------------------------
    eps = property(lambda self: self._eps, doc="Relative error bound: estimates exceed by at most eps * total "
                                                "(with probability 1 - delta per key). As given.")
    delta = property(lambda self: self._delta, doc="Probability per key of exceeding the bound (as given).")
    seed = property(lambda self: self._seed, doc="Hash seed: sketches merge only with equal seeds.")
    conservative = property(lambda self: self._conservative, doc="Whether adds use conservative update.")
    width = property(lambda self: self._counters.shape[1], doc="w = ceil(e / eps), counters per row.")
    depth = property(lambda self: self._counters.shape[0], doc="d = ceil(ln(1 / delta)), rows.")
    total = property(lambda self: self._total, doc="N, the sum of all counts added (the stream's length).")

    @property
    def memory_bytes(self) -> int:
        """Bytes held by the counters."""
        return self._counters.nbytes

    def error_bound(self) -> float:
        """eps * N: for each key, with probability at least 1 - delta, its estimate
        exceeds its true count by at most this much (and is never below it)."""
        return self._eps * self._total

    # -- adding and estimating -----------------------------------------
    def add(self, key, count: int = 1) -> None:
        """Add ``count`` (an int >= 0) occurrences of one key."""
        key = single_key(key, "add", "add_many")
        count = COUNT.check("count", count)
        self._add_prepared(hash_keys([key], self._seed), np.array([count], dtype=np.int64), 0, count)

    def add_many(self, keys, counts=None) -> None:
        """Add the keys of a numpy array (any shape), list or tuple; key i occurs
        ``counts[i]`` times. ``counts``: non-negative integers broadcastable to the keys'
        shape (one int for all), default 1 each. A key may appear more than once."""
        self._add_keys(key_batch(keys, "add_many", "add"), _shape_of(keys), counts)

    def _add_keys(self, flat_keys, shape: tuple, counts) -> np.ndarray:
        """Check everything, then add; the keys' fingerprints (for ``TopK``)."""
        counts, step, added = _prepare_counts(counts, shape)
        fingerprints = hash_keys(flat_keys, self._seed)
        self._add_prepared(fingerprints, counts, step, added)
        return fingerprints

    def _add_prepared(self, fingerprints: np.ndarray, counts: np.ndarray, step: int, added: int) -> None:
        total = self._total + added
        if total > _INT64_MAX:
            raise ValueError(f"adding {added} would take the total to {total}, beyond the 2**63 - 1 "
                             "an int64 counter holds")
        if self._conservative:
            _countmin_kernels.add_conservative(fingerprints, counts, step, self._counters, self._row_keys)
        else:
            _threads.run(_ADD_KERNELS, len(fingerprints), fingerprints, counts, step,
                         self._counters, self._row_keys)
        self._total = total

    def estimate_many(self, keys) -> np.ndarray:
        """Estimated counts, int64, one per key (the keys' shape for an array)."""
        flat = key_batch(keys, "estimate_many", "estimate")
        estimates = self._estimate_fingerprints(hash_keys(flat, self._seed))
        return estimates.reshape(keys.shape) if isinstance(keys, np.ndarray) else estimates

    def estimate(self, key) -> int:
        """Estimated count of one key (also ``sk[key]``)."""
        fingerprints = hash_keys([single_key(key, "estimate", "estimate_many")], self._seed)
        return int(self._estimate_fingerprints(fingerprints)[0])

    __getitem__ = estimate

    def _estimate_fingerprints(self, fingerprints: np.ndarray) -> np.ndarray:
        out = np.empty(len(fingerprints), dtype=np.int64)
        _threads.run(_ESTIMATE_KERNELS, len(fingerprints), fingerprints, self._counters, self._row_keys, out)
        return out

    def heavy_hitters(self, keys, phi: float):
        """The candidate ``keys`` whose estimate is at least phi * N (and above 0),
        largest estimate first, each once (keys equal for ``hash64``, such as "a" and
        b"a", count as one). ``0 < phi < 1``.

        The sketch stores no keys, so the caller names the candidates (or streams
        through ``TopK``, which keeps them). Every candidate whose true count is at
        least phi * N is returned; each one returned has, with probability at least
        1 - delta, a true count of at least (phi - eps) * N. Returns an array for an array
        of candidates, else a list.
        """
        phi = _PHI.check("phi", phi)
        flat = key_batch(keys, "heavy_hitters", "estimate")
        fingerprints = hash_keys(flat, self._seed)
        _, first = np.unique(fingerprints, return_index=True)
        first.sort()  # keep the order of first appearance among equal estimates
        estimates = self._estimate_fingerprints(fingerprints[first])
        chosen = (estimates >= phi * self._total) & (estimates > 0)
        order = np.argsort(-estimates[chosen], kind="stable")
        indices = first[chosen][order]
        return flat[indices] if isinstance(flat, np.ndarray) else [flat[i] for i in indices]

    # -- merging -------------------------------------------------------
    def merge(self, other: CountMinSketch) -> CountMinSketch:
        """Add the stream of ``other`` to this sketch (in place; returns self). ``a | b``
        is a new sketch of both streams, the operands unchanged.

        The counters are summed, which for plain update is exactly the sketch that adding
        both streams to one gives. Conservative sketches merge by the same plain sum, so
        the merge loses the conservative advantage across the two streams: the result
        still never underestimates and is never above the merge of plain sketches of the
        same streams, but it is no longer what conservative update of the whole stream
        gives, and can be looser than one conservative sketch fed both.
        """
        self._check_mergeable(other)
        total = self._total + other._total
        if total > _INT64_MAX:
            raise ValueError(f"the merged total {total} exceeds the 2**63 - 1 an int64 counter holds")
        self._counters += other._counters
        self._total = total
        return self

    def __or__(self, other):
        return self._copy().merge(other) if isinstance(other, CountMinSketch) else NotImplemented

    def _copy(self) -> CountMinSketch:
        parameters = self._eps, self._delta, self._seed, self._conservative
        return type(self)._assemble(parameters, self._counters.copy(), self._total)

    def _check_mergeable(self, other) -> None:
        if not isinstance(other, CountMinSketch):
            raise TypeError(f"merge needs another CountMinSketch, got {type(other).__name__}")
        differences = [f"{name} ({mine!r} vs {theirs!r})"
                       for name, mine, theirs in zip(("width", "depth", "seed", "conservative"),
                                                     self._shape(), other._shape())
                       if mine != theirs]
        if differences:
            raise ValueError(f"cannot merge sketches that differ in {', '.join(differences)}: "
                             "build both with the same eps, delta, seed and conservative")

    def _shape(self) -> tuple:
        return self.width, self.depth, int(self._seed), bool(self._conservative)

    @classmethod
    def _assemble(cls, parameters: tuple, counters: np.ndarray, total: int) -> CountMinSketch:
        """A sketch from its (eps, delta, seed, conservative) and its state."""
        result = object.__new__(cls)
        result._eps, result._delta, result._seed, result._conservative = parameters
        result._set_state(counters, total)
        return result

    # -- serialisation -------------------------------------------------
    def to_bytes(self) -> bytes:
        """The sketch as bytes: a versioned header, the counters, and a CRC-32 checksum."""
        fields = (int(bool(self._conservative)), self.width, self.depth, int(self._seed),
                  float(self._eps), float(self._delta), self._total)
        return _FORMAT.pack(fields, self._counters.astype("<i8", copy=False).tobytes())

    @classmethod
    def from_bytes(cls, data) -> CountMinSketch:
        """The sketch ``to_bytes`` wrote. Raises ValueError, saying what is wrong, for data
        that are truncated, corrupt, not a Count-Min sketch, or from a newer format."""
        fields, payload = _FORMAT.unpack(data, lambda f: (f[1] * f[2] * 8, f"{f[2]} x {f[1]} counters"))
        conservative, width, depth, seed, eps, delta, total = fields
        if (width, depth) != (_width(eps), _depth(delta)):
            raise ValueError(f"corrupt header: eps={eps} and delta={delta} give {_depth(delta)} x "
                             f"{_width(eps)} counters, but the header says {depth} x {width}")
        counters = np.frombuffer(payload, dtype="<i8").astype(np.int64).reshape(depth, width)
        # Every add puts its count once in each row (at most once, conservatively).
        row_sums = counters.sum(axis=1)
        if counters.min() < 0 or counters.max() > total or \
                (row_sums > total).any() or (not conservative and (row_sums != total).any()):
            raise ValueError(f"corrupt counters: the checksum matches but they do not add up to the total {total}")
        return cls._assemble((eps, delta, seed, bool(conservative)), counters, total)

    def __reduce__(self):
        return type(self).from_bytes, (self.to_bytes(),)

    def __eq__(self, other) -> bool:
        if not isinstance(other, CountMinSketch):
            return NotImplemented
        return (self._shape() == other._shape() and self._total == other._total
                and self._eps == other._eps and self._delta == other._delta
                and np.array_equal(self._counters, other._counters))

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        return (f"CountMinSketch(eps={self._eps!r}, delta={self._delta!r}, seed={self._seed!r}, "
                f"conservative={self._conservative!r}): {self.depth} x {self.width} int64 counters, "
                f"total {self._total}")


class TopK:
    """Heavy hitters of a stream: a Count-Min sketch plus the k keys with the largest estimates.

        top = TopK(CountMinSketch(0.001, 0.01), k=100)
        for batch in stream:
            top.add_many(batch)
        top.heavy_hitters(0.01)     # the kept keys with estimate >= 1% of the total
        keys, estimates = top.candidates()

    After each batch every kept key is estimated again, with the batch's keys, and the
    k largest estimates stay (ties keep the older key). Estimates only grow, so the
    smallest kept estimate never falls, and a key is passed over or dropped only for
    k others estimated at least as high as it was then (at least its true count, once
    its last occurrence is in). Hence: if ``heavy_hitters(phi)`` returns fewer than k
    keys, it holds every key whose true count is at least phi * N. Take k comfortably
    above 1/phi. Only keys added through this object are tracked: keys added to the
    sketch directly count in estimates but are never candidates. Keys are kept as
    Python objects (array keys become Python scalars).
    """

    _parameter_constraints = {"k": Integer(low=1)}

    def __init__(self, sketch: CountMinSketch, k: int):
        if not isinstance(sketch, CountMinSketch):
            raise TypeError(f"sketch must be a CountMinSketch, got {type(sketch).__name__}")
        validate(self._parameter_constraints, k=k)
        self._sketch, self._k = sketch, k
        self._keys: list = []
        self._fingerprints = np.empty(0, dtype=np.uint64)

    sketch = property(lambda self: self._sketch, doc="The Count-Min sketch the keys are added to.")
    k = property(lambda self: self._k, doc="How many candidate keys are kept.")

    def add(self, key, count: int = 1) -> None:
        """Add ``count`` occurrences of one key to the sketch, and track it."""
        key = single_key(key, "add", "add_many")
        self._track([key], self._sketch._add_keys([key], (1,), COUNT.check("count", count)))

    def add_many(self, keys, counts=None) -> None:
        """``CountMinSketch.add_many``, then keep the k keys with the largest estimates."""
        flat = key_batch(keys, "add_many", "add")
        self._track(flat, self._sketch._add_keys(flat, _shape_of(keys), counts))

    def _track(self, flat_keys, fingerprints: np.ndarray) -> None:
        # the kept keys and the batch estimated in one kernel call
        both = self._sketch._estimate_fingerprints(np.concatenate([self._fingerprints, fingerprints]))
        kept, estimates = both[:len(self._fingerprints)], both[len(self._fingerprints):]
        # A batch key can only enter with an estimate above the k-th kept one (which
        # only grows), so most of a skewed batch is passed over before ``unique``.
        bar = kept.min() if len(kept) == self._k else -1
        contenders = np.flatnonzero(estimates > bar)
        new_fingerprints, first = np.unique(fingerprints[contenders], return_index=True)
        is_new = ~np.isin(new_fingerprints, self._fingerprints)
        first, new_fingerprints = contenders[first[is_new]], new_fingerprints[is_new]
        order = np.argsort(first)  # first appearance in the batch, for ties
        first, new_fingerprints = first[order], new_fingerprints[order]
        every_fingerprint = np.concatenate([self._fingerprints, new_fingerprints])
        every_estimate = np.concatenate([kept, estimates[first]])
        best = np.argsort(-every_estimate, kind="stable")[: self._k]
        batch_keys = _as_python_keys(flat_keys, first)
        every_key = self._keys + batch_keys
        self._keys = [every_key[i] for i in best]
        self._fingerprints = every_fingerprint[best]

    def candidates(self) -> tuple[list, np.ndarray]:
        """(the kept keys, their current estimates), largest estimate first."""
        estimates = self._sketch._estimate_fingerprints(self._fingerprints)
        order = np.argsort(-estimates, kind="stable")
        return [self._keys[i] for i in order], estimates[order]

    def heavy_hitters(self, phi: float) -> list:
        """The kept keys whose estimate is at least phi * N (and above 0), largest
        first; ``0 < phi < 1``. See ``CountMinSketch.heavy_hitters``."""
        phi = _PHI.check("phi", phi)
        keys, estimates = self.candidates()
        return [key for key, e in zip(keys, estimates) if e >= phi * self._sketch.total and e > 0]

    def __repr__(self) -> str:
        return f"TopK(k={self._k}, {len(self._keys)} keys kept) over {self._sketch!r}"


def _shape_of(keys) -> tuple:
    return keys.shape if isinstance(keys, np.ndarray) else (len(keys),)


def _as_python_keys(flat_keys, indices: np.ndarray) -> list:
    if isinstance(flat_keys, np.ndarray):
        return flat_keys[indices].tolist()
    return [flat_keys[i] for i in indices]


def _prepare_counts(counts, shape: tuple) -> tuple[np.ndarray, int, int]:
    """(int64 counts, step, their sum) for keys of ``shape``: step 0 means one count
    for every key. Raises TypeError or ValueError naming ``counts``."""
    n_keys = math.prod(shape)
    if counts is None:
        return np.ones(1, dtype=np.int64), 0, n_keys
    array = np.asarray(counts)
    if array.size == 0:
        array = array.astype(np.int64)  # [] is float64 to numpy; no counts, no wrong type
    if array.dtype.kind not in "iu":
        got = f"an array of {array.dtype}" if array.ndim else f"{counts!r} ({type(counts).__name__})"
        raise TypeError(f"counts must be integers >= 0, got {got}")
    try:
        broadcast = np.broadcast_to(array, shape)
    except ValueError:
        raise ValueError(f"counts of shape {array.shape} do not broadcast to the keys' shape {shape}") from None
    if array.size and array.min() < 0:
        where = ", ".join(str(int(i)) for i in np.unravel_index(array.argmin(), array.shape))
        raise ValueError(f"counts must be integers >= 0, got {array.min()}"
                         + (f" at counts[{where}]" if array.ndim else ""))
    if array.size and array.max() > _INT64_MAX:
        raise ValueError(f"counts must be integers < 2**63 (int64 counters), got {array.max()}")
    if array.size == 1:
        count = int(array.reshape(-1)[0])
        return np.array([count], dtype=np.int64), 0, count * n_keys
    if array.shape == shape:
        flat = np.ascontiguousarray(array, dtype=np.int64).reshape(-1)
    else:
        flat = broadcast.astype(np.int64).reshape(-1)
    largest = int(flat.max()) if flat.size else 0
    # The int64 sum cannot wrap below this; beyond it, add exactly (the caller refuses
    # a total past 2**63 - 1).
    added = int(flat.sum()) if largest * flat.size <= _INT64_MAX else sum(map(int, flat))
    return flat, 1, added
