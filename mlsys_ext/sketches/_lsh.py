"""Locality-sensitive hashing: ``MinHashLSH`` (Jaccard, over MinHash signatures) and
``SimHashLSH`` (cosine, over float vectors, with multi-probe and exact re-ranking)."""
from __future__ import annotations

import functools
import math
import numbers
import warnings

import numpy as np

from .. import _threads
from . import _lsh_kernels
from ._hashing import SEED, hash_keys
from ._minhash import splitmix64
from ._validation import Integer, OpenInterval, validate

_BAND_HASH_DOMAIN = 0xBE5466CF34E90C6C
_HYPERPLANE_DOMAIN = 0xC0AC29B7C97C50DD
_BAND_HASH_KERNELS = (_lsh_kernels.band_hashes, _lsh_kernels.band_hashes_parallel)
_BAND_CODE_KERNELS = (_lsh_kernels.band_codes, _lsh_kernels.band_codes_parallel)
_QUERY_KERNELS = (_lsh_kernels.simhash_query, _lsh_kernels.simhash_query_parallel)
# What ``_threads.run`` weighs, in "keys" of a few ns (one hash64): a band hash
# costs about one per slot, a band code one per bit, and a SimHash query (bucket
# look-ups, then a dot product per candidate) thousands.
_QUERY_COST = 4096


# -- the S-curve and the choice of bands and rows ---------------------------------------

def s_curve(similarity, bands: int, rows: int):
    """P(s) = 1 - (1 - s^r)^b: the probability that two items of similarity s share a
    bucket in at least one of b bands of r slots (or bits) each."""
    s = np.asarray(similarity, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return -np.expm1(bands * np.log1p(-(s ** rows)))


def error_areas(threshold: float, bands, rows) -> tuple:
    """(FP, FN): the areas integral_0^t P(s) ds and integral_t^1 (1 - P(s)) ds, by
    Gauss-Legendre quadrature (exact for the polynomial P while b r < 512).
    ``bands`` and ``rows`` may be arrays that broadcast; the areas have their shape."""
    bands, rows = np.asarray(bands, dtype=np.float64), np.asarray(rows, dtype=np.float64)
    degree = int(np.max(bands * rows)) if bands.size and rows.size else 1
    x, w = _gauss_legendre(int(min(max(degree // 2 + 1, 32), 256)))
    below = threshold / 2 * (x + 1)                  # the nodes mapped onto [0, t]
    above = threshold + (1 - threshold) / 2 * (x + 1)  # and onto [t, 1]
    b, r = bands[..., None], rows[..., None]
    fp = threshold / 2 * (-np.expm1(b * np.log1p(-(below ** r)))) @ w
    fn = (1 - threshold) / 2 * np.exp(b * np.log1p(-(above ** r))) @ w
    return fp, fn


@functools.lru_cache(maxsize=None)
def _gauss_legendre(n: int):
    return np.polynomial.legendre.leggauss(n)


@functools.lru_cache(maxsize=256)
def optimal_params(threshold: float, num_perm: int, fp_weight: float, fn_weight: float) -> tuple:
    """The (bands, rows) with bands * rows <= num_perm that minimise
    fp_weight * FP + fn_weight * FN (``error_areas``); ties go to fewer bands, then
    fewer rows. Every pair in one batch, in that order: a call per band count took 0.9 s
    at num_perm=512, 0.12 s this way."""
    bands = np.concatenate([np.full(num_perm // b, b) for b in range(1, num_perm + 1)])
    rows = np.concatenate([np.arange(1, num_perm // b + 1) for b in range(1, num_perm + 1)])
    fp, fn = error_areas(threshold, bands, rows)
    best = int(np.argmin(fp_weight * fp + fn_weight * fn))  # the first of equal minima
    return int(bands[best]), int(rows[best])


# -- MinHashLSH ---------------------------------------------------------------------

class MinHashLSH:
    """An index of MinHash signatures that finds, for a query signature, the keys
    whose sets are likely to have Jaccard similarity above ``threshold``.

        mh = MinHash(num_perm=128)
        lsh = MinHashLSH(threshold=0.8, num_perm=128)
        lsh.insert_many(["a", "b"], mh.signatures([set_a, set_b]))
        lsh.query(mh.signature(set_c))         # e.g. ["a"]: candidates, to verify

    Each signature is cut into b bands of r slots (the first b r slots); two sets
    become candidates when all r slots of some band agree, which happens with
    probability P(s) = 1 - (1 - s^r)^b for Jaccard similarity s (``probability``).
    Unless ``params=(b, r)`` is given, b and r minimise fp_weight * FP + fn_weight *
    FN, FP = integral_0^t P(s) ds (similar-looking pairs below the threshold) and FN =
    integral_t^1 (1 - P(s)) ds (missed pairs above it), ``weights=(fp_weight,
    fn_weight)``. The optimum often leaves a few slots unused (b = 9, r = 13 for the
    defaults); explicit ``params`` that do so draw a warning, since slots computed
    for nothing are usually a mistake.

    Keys are any hashable values, at most once each. Signatures must come from one
    ``MinHash(num_perm, seed)`` (any seed, the same for all). Indexes built apart
    with equal ``num_perm``, bands, rows and ``seed`` (which keys the band hashes)
    combine: ``a.merge(b)`` in place, ``a | b`` as a new index. Picklable. Not thread-safe.
    """

    _parameter_constraints = {
        "threshold": OpenInterval(0.0, 1.0),
        "num_perm": Integer(low=1, high=2**16),
        "seed": SEED,
    }

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, weights=(0.5, 0.5), params=None,
                 seed: int = 0):
        checked = validate(self._parameter_constraints, threshold=threshold, num_perm=num_perm, seed=seed)
        fp_weight, fn_weight = _check_weights(weights)
        if params is None:
            bands, rows = optimal_params(checked["threshold"], checked["num_perm"], fp_weight, fn_weight)
        else:
            bands, rows = _check_params(params, checked["num_perm"])
            if bands * rows < num_perm:
                warnings.warn(f"params=({bands}, {rows}) use {bands * rows} of the num_perm={num_perm} "
                              f"signature slots; the other {num_perm - bands * rows} are computed for "
                              f"nothing (use num_perm={bands * rows}, or more bands or rows)",
                              UserWarning, stacklevel=2)
        self._threshold, self._num_perm, self._weights, self._params, self._seed = \
            threshold, num_perm, weights, params, seed
        self._set_state(bands, rows)

    def _set_state(self, bands: int, rows: int) -> None:
        self._bands, self._rows = bands, rows
        self._key = np.uint64(splitmix64(int(self._seed) ^ _BAND_HASH_DOMAIN, 1)[0])
        self._tables = [{} for _ in range(bands)]   # band hash -> set of keys
        self._entries = {}                          # key -> its band hashes

    threshold = property(lambda self: self._threshold, doc="Target Jaccard similarity (as given).")
    num_perm = property(lambda self: self._num_perm, doc="Slots per signature.")
    weights = property(lambda self: self._weights, doc="(false-positive, false-negative) weights (as given).")
    seed = property(lambda self: self._seed, doc="Seed of the band hashes: indexes merge only with equal seeds.")

    @property
    def params(self) -> tuple[int, int]:
        """(bands, rows), chosen or given."""
        return self._bands, self._rows

    def probability(self, similarity):
        """The S-curve 1 - (1 - s^r)^b at Jaccard similarity s (a float, or an array of
        them in [0, 1], giving an array of the same shape)."""
        s = np.asarray(similarity)
        if s.dtype.kind not in "biuf" or np.any(~((s >= 0) & (s <= 1))):
            raise ValueError(f"similarity must be in [0, 1], got {similarity!r}")
        p = s_curve(s, self._bands, self._rows)
        return float(p) if p.ndim == 0 else p

    def error_areas(self) -> tuple[float, float]:
        """(FP, FN) of these bands and rows at ``threshold`` (see the class doc)."""
        fp, fn = error_areas(float(self._threshold), self._bands, self._rows)
        return float(fp), float(fn)

    # -- contents ------------------------------------------------------
    def insert(self, key, signature) -> None:
        """Index ``key`` under a ``(num_perm,)`` signature. A key may be inserted once."""
        _check_hashable(key)
        if key in self._entries:
            raise ValueError(f"key {key!r} is already in the index: remove it first")
        hashes = self._band_hashes(_signature_rows(signature, self._num_perm, single=True))
        self._add(key, tuple(hashes.tolist()[0]))

    def insert_many(self, keys, signatures) -> None:
        """Index ``keys[j]`` under ``signatures[j]``, an ``(n, num_perm)`` array. Nothing
        is inserted if any key is unhashable, repeated or already present."""
        keys = keys.tolist() if isinstance(keys, np.ndarray) else keys
        if not isinstance(keys, (list, tuple)):
            raise TypeError(f"keys must be a list, tuple or numpy array, got {type(keys).__name__}; "
                            "use insert for one key")
        rows = _signature_rows(signatures, self._num_perm, single=False)
        if len(keys) != rows.shape[0]:
            raise ValueError(f"{len(keys)} keys but {rows.shape[0]} signatures")
        for key in keys:
            _check_hashable(key)
        if len(set(keys)) != len(keys):
            seen = set()
            repeated = next(k for k in keys if k in seen or seen.add(k))
            raise ValueError(f"key {repeated!r} appears more than once in keys")
        present = next((k for k in keys if k in self._entries), _MISSING)
        if present is not _MISSING:
            raise ValueError(f"key {present!r} is already in the index: remove it first")
        for key, hashes in zip(keys, self._band_hashes(rows).tolist()):
            self._add(key, tuple(hashes))

    def query(self, signature) -> list:
        """The keys sharing at least one band with ``signature``: candidates whose
        similarity is likely above the threshold (verify them if it matters), in no
        particular order."""
        hashes = self._band_hashes(_signature_rows(signature, self._num_perm, single=True))
        return self._candidates(hashes.tolist()[0])

    def query_many(self, signatures) -> list[list]:
        """``query`` for each row of an ``(n, num_perm)`` array, hashed in one batch."""
        rows = _signature_rows(signatures, self._num_perm, single=False)
        return [self._candidates(hashes) for hashes in self._band_hashes(rows).tolist()]

    def remove(self, key) -> None:
        """Take ``key`` out of the index (KeyError if it is not in)."""
        _check_hashable(key)
        hashes = self._entries.pop(key, _MISSING)
        if hashes is _MISSING:
            raise KeyError(key)
        for table, h in zip(self._tables, hashes):
            bucket = table[h]
            bucket.discard(key)
            if not bucket:
                del table[h]

    def keys(self) -> list:
        """The keys indexed, in insertion order."""
        return list(self._entries)

    def __contains__(self, key) -> bool:
        try:
            return key in self._entries
        except TypeError:
            return False

    def __len__(self) -> int:
        return len(self._entries)

    def _band_hashes(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((rows.shape[0], self._bands), dtype=np.uint64)
        _threads.run(_BAND_HASH_KERNELS, rows.shape[0] * self._bands * self._rows,
                     rows, self._rows, self._key, out)
        return out

    def _add(self, key, hashes: tuple) -> None:
        self._entries[key] = hashes
        for table, h in zip(self._tables, hashes):
            bucket = table.get(h)
            if bucket is None:
                table[h] = {key}
            else:
                bucket.add(key)

    def _candidates(self, hashes) -> list:
        found = set()
        for table, h in zip(self._tables, hashes):
            bucket = table.get(h)
            if bucket:
                found |= bucket
        return list(found)

    # -- combining -----------------------------------------------------
    def merge(self, other: MinHashLSH) -> MinHashLSH:
        """Add every entry of ``other`` to this index (in place; returns self). A key in
        both must have been inserted with the same signature (then it is kept once);
        otherwise nothing is added and ValueError is raised. ``a | b`` is a new index
        of both, the operands unchanged."""
        self._check_mergeable(other)
        conflicts = [k for k, h in other._entries.items() if self._entries.get(k, h) != h]
        if conflicts:
            raise ValueError(f"cannot merge: key {conflicts[0]!r} (and {len(conflicts) - 1} more) "
                             "is in both indexes with different signatures")
        for key, hashes in other._entries.items():
            if key not in self._entries:
                self._add(key, hashes)
        return self

    def __or__(self, other):
        return self._copy().merge(other) if isinstance(other, MinHashLSH) else NotImplemented

    def _check_mergeable(self, other) -> None:
        if not isinstance(other, MinHashLSH):
            raise TypeError(f"merge needs another MinHashLSH, got {type(other).__name__}")
        mine = (self._num_perm, self._bands, self._rows, int(self._seed))
        theirs = (other._num_perm, other._bands, other._rows, int(other._seed))
        differences = [f"{name} ({a!r} vs {b!r})" for name, a, b in
                       zip(("num_perm", "bands", "rows", "seed"), mine, theirs) if a != b]
        if differences:
            raise ValueError(f"cannot merge indexes that differ in {', '.join(differences)}: "
                             "build both with the same num_perm, threshold, weights (or params) and seed")

    def _copy(self) -> MinHashLSH:
        return type(self)._assemble(self._parameters(), self._bands, self._rows, self._entries.items())

    def _parameters(self) -> tuple:
        return self._threshold, self._num_perm, self._weights, self._params, self._seed

    @classmethod
    def _assemble(cls, parameters: tuple, bands: int, rows: int, entries) -> MinHashLSH:
        """An index from its parameters and (key, band hashes) entries, without
        choosing the bands again (and without the warning)."""
        index = object.__new__(cls)
        index._threshold, index._num_perm, index._weights, index._params, index._seed = parameters
        index._set_state(bands, rows)
        for key, hashes in entries:
            index._add(key, tuple(hashes))
        return index

    def __reduce__(self):
        hashes = np.array(list(self._entries.values()), dtype=np.uint64).reshape(len(self), self._bands)
        return _restore_minhash_lsh, (self._parameters(), self._bands, self._rows, self.keys(), hashes)

    def __eq__(self, other) -> bool:
        if not isinstance(other, MinHashLSH):
            return NotImplemented
        return (self._parameters() == other._parameters() and self.params == other.params
                and self._entries == other._entries)

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        return (f"MinHashLSH(threshold={self._threshold!r}, num_perm={self._num_perm!r}, "
                f"weights={self._weights!r}, params={self._params!r}, seed={self._seed!r}): "
                f"{self._bands} bands x {self._rows} rows, {len(self)} keys")


def _restore_minhash_lsh(parameters, bands, rows, keys, hashes):
    return MinHashLSH._assemble(parameters, bands, rows, zip(keys, hashes.tolist()))


_MISSING = object()


def _check_weights(weights) -> tuple[float, float]:
    what = ("weights must be a pair (false-positive weight, false-negative weight) of finite "
            "reals >= 0, not both 0")
    if isinstance(weights, np.ndarray):
        weights = weights.tolist()
    if not isinstance(weights, (tuple, list)) or len(weights) != 2:
        raise TypeError(f"{what}, got {weights!r}")
    for w in weights:
        if isinstance(w, bool) or not isinstance(w, numbers.Real):
            raise TypeError(f"{what}, got {weights!r} (holding a {type(w).__name__})")
    fp, fn = float(weights[0]), float(weights[1])
    if not (math.isfinite(fp) and math.isfinite(fn) and fp >= 0 and fn >= 0) or fp + fn == 0:
        raise ValueError(f"{what}, got {weights!r}")
    return fp, fn


def _check_params(params, num_perm: int) -> tuple[int, int]:
    what = "params must be None (choose bands and rows) or a pair (bands, rows) of ints >= 1"
    if not isinstance(params, (tuple, list)) or len(params) != 2 or not all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in params):
        raise TypeError(f"{what}, got {params!r}")
    bands, rows = int(params[0]), int(params[1])
    if bands < 1 or rows < 1:
        raise ValueError(f"{what}, got {params!r}")
    if bands * rows > num_perm:
        raise ValueError(f"params=({bands}, {rows}) need bands * rows = {bands * rows} signature slots, "
                         f"more than num_perm={num_perm}")
    return bands, rows


def _check_hashable(key) -> None:
    try:
        hash(key)
    except TypeError:
        raise TypeError(f"keys must be hashable, got a {type(key).__name__}") from None


def _signature_rows(signatures, num_perm: int, single: bool) -> np.ndarray:
    """The signature(s) as a C-contiguous (n, num_perm) uint64 array."""
    array = np.asarray(signatures)
    name = "signature" if single else "signatures"
    want = f"({num_perm},)" if single else f"(n, {num_perm})"
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must be uint64 MinHash slots of shape {want}, got "
                        f"{'an array of ' + str(array.dtype) if array.ndim else type(signatures).__name__}")
    if array.ndim != (1 if single else 2) or array.shape[-1] != num_perm:
        hint = "; use query_many/insert_many for many" if single and array.ndim == 2 else ""
        raise ValueError(f"{name} must have shape {want} (num_perm={num_perm}), got shape {array.shape}{hint}")
    return np.ascontiguousarray(array.reshape(-1, num_perm), dtype=np.uint64)


# -- SimHashLSH ---------------------------------------------------------------------

class SimHashLSH:
    """Approximate k-nearest neighbours by cosine distance over float vectors.

        index = SimHashLSH(dim=64, bits=64, bands=8, probes=2)
        index.add(vectors)                          # ids 0, 1, ... unless given
        ids, distances = index.query(queries, k=10)

    Each of ``bits`` random hyperplanes through the origin (directions uniform on the
    sphere, drawn from ``seed``) gives a vector one bit, its side: two vectors at
    angle theta agree on a bit with probability 1 - theta/pi. The bits form
    ``bands`` bands of ``bits / bands``; vectors agreeing on a whole band share its
    bucket. A query's candidates are the vectors sharing a bucket with it in some
    band, plus, with multi-probe, those in the ``probes`` buckets per band reached by
    flipping the bits whose hyperplanes pass closest to the query (cheapest first,
    by the sum of squared margins), which catches neighbours just across a
    hyperplane. The candidates are then ranked by their exact cosine distance
    1 - cos (on the vectors as added, normalised and stored as float32).

    ``query`` returns ``(ids, distances)``, arrays of shape ``(n_queries, k)``, nearest
    first, padded with id -1 and distance inf when fewer than k candidates were
    found. A zero vector has cosine 0 with everything (distance 1).

    Picklable; indexes with equal ``dim``, ``bits``, ``bands`` and ``seed`` combine
    (ids must not overlap): ``a.merge(b)`` in place, ``a | b`` as a new index. Not
    thread-safe for adds.
    """

    _parameter_constraints = {
        "dim": Integer(low=1, high=2**31),
        "bits": Integer(low=1, high=65),
        "bands": Integer(low=1, high=65),
        "seed": SEED,
        "probes": Integer(low=0, high=2**16),
    }

    def __init__(self, dim: int, bits: int = 64, bands: int = 8, seed: int = 0, probes: int = 0):
        validate(self._parameter_constraints, dim=dim, bits=bits, bands=bands, seed=seed, probes=probes)
        if bits % bands:
            raise ValueError(f"bits={bits} must be divisible by bands={bands}: each band takes "
                             "bits/bands of the bits")
        self._dim, self._bits, self._bands, self._seed, self._probes = dim, bits, bands, seed, probes
        self._set_state(np.empty((0, dim), np.float32), np.empty(0, np.int64),
                        np.empty((0, bands), np.uint64))

    def _set_state(self, vectors: np.ndarray, ids: np.ndarray, codes: np.ndarray) -> None:
        self._band_bits = int(self._bits) // int(self._bands)
        self._planes = hyperplanes(int(self._dim), int(self._bits), int(self._seed))
        self._chunks = [(vectors, ids, codes)] if len(ids) else []   # consolidated lazily
        self._count = len(ids)
        self._next_id = int(ids.max()) + 1 if len(ids) else 0
        self._index = None   # (vectors, ids, sorted codes, order), built by the next query

    dim = property(lambda self: self._dim, doc="Dimension of the vectors.")
    bits = property(lambda self: self._bits, doc="Hyperplanes (bits per vector).")
    bands = property(lambda self: self._bands, doc="Bands the bits are split into.")
    seed = property(lambda self: self._seed, doc="Seed of the hyperplanes.")
    probes = property(lambda self: self._probes, doc="Extra buckets probed per band by default.")

    @property
    def hyperplanes(self) -> np.ndarray:
        """The ``(bits, dim)`` unit normals of the hyperplanes (a copy)."""
        return self._planes.copy()

    @property
    def ids(self) -> np.ndarray:
        """The ids added, in order (a copy)."""
        return self._consolidated()[1].copy()

    def __len__(self) -> int:
        return self._count

    def probability(self, similarity):
        """Theory: the probability that a vector at cosine similarity ``similarity`` to
        the query shares a bucket with it in some band, 1 - (1 - (1 - theta/pi)^w)^bands
        with w = bits/bands and theta = arccos(similarity), without multi-probe (which
        only adds candidates). A float, or an array of the input's shape."""
        c = np.asarray(similarity)
        if c.dtype.kind not in "biuf" or np.any(~((c >= -1) & (c <= 1))):
            raise ValueError(f"similarity must be a cosine in [-1, 1], got {similarity!r}")
        bit_agreement = 1 - np.arccos(c.astype(np.float64)) / np.pi
        p = s_curve(bit_agreement, self._bands, self._band_bits)
        return float(p) if p.ndim == 0 else p

    def add(self, vectors, ids=None) -> np.ndarray:
        """Add an ``(n, dim)`` array of vectors (or one ``(dim,)`` vector) under ``ids``,
        distinct non-negative ints not in the index yet (default: the next n ints after
        the largest id so far). Returns the ids."""
        unit = self._unit_vectors(vectors, "vectors")
        n = unit.shape[0]
        if ids is None:
            ids = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        else:
            ids = self._check_new_ids(ids, n)
        codes = np.empty((n, self._bands), dtype=np.uint64)
        _threads.run(_BAND_CODE_KERNELS, n * self._bits, self._project(unit), self._band_bits, codes)
        self._append(unit, ids, codes)
        return ids.copy()

    def query(self, vectors, k: int = 10, probes: int | None = None):
        """The ``k`` nearest candidates of each query vector: ``(ids, distances)``, int64
        and float64 arrays of shape ``(n_queries, k)`` (one vector counts as one query),
        by cosine distance 1 - cos, nearest first, padded with -1 and inf.
        ``probes`` overrides the index's extra buckets per band for this call (at most
        2**(bits/bands) - 1 are used: all the band's other buckets)."""
        k = Integer(low=1).check("k", k)
        probes = self._probes if probes is None else self._parameter_constraints["probes"].check("probes", probes)
        probes = min(int(probes), 2**self._band_bits - 1)
        unit = self._unit_vectors(vectors, "query vectors")
        projections = self._project(unit)
        codes = np.empty((unit.shape[0], self._bands), dtype=np.uint64)
        _threads.run(_BAND_CODE_KERNELS, unit.shape[0] * self._bits, projections, self._band_bits, codes)
        stored, ids, sorted_codes, order = self._search_index()
        out_ids = np.empty((unit.shape[0], k), dtype=np.int64)
        out_distances = np.empty((unit.shape[0], k), dtype=np.float64)
        _threads.run(_QUERY_KERNELS, unit.shape[0] * _QUERY_COST, unit, projections, codes,
                     sorted_codes, order, stored, ids, self._band_bits, probes, out_ids, out_distances)
        return out_ids, out_distances

    def _unit_vectors(self, vectors, name: str) -> np.ndarray:
        array = np.asarray(vectors)
        if array.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be real numbers, got an array of {array.dtype}")
        if array.ndim == 1:
            array = array[None, :]
        if array.ndim != 2 or array.shape[1] != self._dim:
            raise ValueError(f"{name} must have shape (n, {self._dim}) or ({self._dim},) "
                             f"(dim={self._dim}), got shape {np.shape(vectors)}")
        array = array.astype(np.float64)
        if not np.isfinite(array).all():
            raise ValueError(f"{name} must be finite (no NaN or inf)")
        norms = np.linalg.norm(array, axis=1, keepdims=True)
        np.divide(array, norms, out=array, where=norms > 0)
        return np.ascontiguousarray(array, dtype=np.float32)

    def _project(self, unit: np.ndarray) -> np.ndarray:
        """Signed distances of the unit vectors to the unit hyperplanes, (n, bits)."""
        return np.ascontiguousarray(unit.astype(np.float64) @ self._planes.T)

    def _check_new_ids(self, ids, n: int) -> np.ndarray:
        array = np.asarray(ids)
        if array.dtype.kind not in "iu" and not (array.size == 0 and array.dtype.kind == "f"):
            raise TypeError(f"ids must be ints, got an array of {array.dtype}")
        if array.shape != (n,):
            raise ValueError(f"ids must have shape ({n},), one per vector, got shape {array.shape}")
        if n and (array.min() < 0 or array.max() >= 2**63):
            raise ValueError("ids must be in [0, 2**63): -1 marks a missing neighbour")
        array = array.astype(np.int64)
        unique = np.unique(array)
        if len(unique) != n:
            raise ValueError(f"ids must be distinct; {_first_repeated(array)} appears more than once")
        taken = unique[np.isin(unique, self._consolidated()[1])]
        if len(taken):
            raise ValueError(f"id {taken[0]} is already in the index")
        return array

    def _append(self, unit: np.ndarray, ids: np.ndarray, codes: np.ndarray) -> None:
        if len(ids):
            self._chunks.append((unit, ids, codes))
            self._count += len(ids)
            self._next_id = max(self._next_id, int(ids.max()) + 1)
            self._index = None

    def _consolidated(self):
        """(vectors, ids, codes) of everything added, as single arrays."""
        if len(self._chunks) != 1:
            if not self._chunks:
                return (np.empty((0, self._dim), np.float32), np.empty(0, np.int64),
                        np.empty((0, self._bands), np.uint64))
            self._chunks = [tuple(np.concatenate(parts) for parts in zip(*self._chunks))]
        return self._chunks[0]

    def _search_index(self):
        if self._index is None:
            vectors, ids, codes = self._consolidated()
            order = np.ascontiguousarray(np.argsort(codes, axis=0, kind="stable").T)
            sorted_codes = np.ascontiguousarray(np.take_along_axis(codes, order.T, axis=0).T)
            self._index = vectors, ids, sorted_codes, order
        return self._index

    # -- combining -----------------------------------------------------
    def merge(self, other: SimHashLSH) -> SimHashLSH:
        """Add every vector of ``other`` to this index (in place; returns self). The ids
        must not overlap; ``probes`` stays this index's. ``a | b`` is a new index of
        both, the operands unchanged."""
        self._check_mergeable(other)
        vectors, ids, codes = other._consolidated()
        shared = np.intersect1d(self._consolidated()[1], ids)
        if len(shared):
            raise ValueError(f"cannot merge: id {shared[0]} (and {len(shared) - 1} more) is in both indexes")
        self._append(vectors, ids, codes)
        return self

    def __or__(self, other):
        return self._copy().merge(other) if isinstance(other, SimHashLSH) else NotImplemented

    def _check_mergeable(self, other) -> None:
        if not isinstance(other, SimHashLSH):
            raise TypeError(f"merge needs another SimHashLSH, got {type(other).__name__}")
        names = ("dim", "bits", "bands", "seed")
        mine, theirs = self._shape(), other._shape()
        differences = [f"{name} ({a!r} vs {b!r})" for name, a, b in zip(names, mine, theirs) if a != b]
        if differences:
            raise ValueError(f"cannot merge indexes that differ in {', '.join(differences)}: "
                             "build both with the same dim, bits, bands and seed")

    def _shape(self) -> tuple:
        return int(self._dim), int(self._bits), int(self._bands), int(self._seed)

    def _copy(self) -> SimHashLSH:
        return _restore_simhash_lsh(self._parameters(), *self._consolidated())

    def _parameters(self) -> tuple:
        return self._dim, self._bits, self._bands, self._seed, self._probes

    def __reduce__(self):
        return _restore_simhash_lsh, (self._parameters(), *self._consolidated())

    def __eq__(self, other) -> bool:
        if not isinstance(other, SimHashLSH):
            return NotImplemented
        mine, theirs = self._consolidated(), other._consolidated()
        return self._parameters() == other._parameters() and all(
            np.array_equal(a, b) for a, b in zip(mine, theirs))

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        return (f"SimHashLSH(dim={self._dim!r}, bits={self._bits!r}, bands={self._bands!r}, "
                f"seed={self._seed!r}, probes={self._probes!r}): {self._count} vectors")


def _restore_simhash_lsh(parameters, vectors, ids, codes):
    index = object.__new__(SimHashLSH)
    index._dim, index._bits, index._bands, index._seed, index._probes = parameters
    index._set_state(vectors.copy(), ids.copy(), codes.copy())
    return index


def hyperplanes(dim: int, bits: int, seed: int) -> np.ndarray:
    """``bits`` unit normals in ``dim`` dimensions, uniform on the sphere: Gaussian
    coordinates by Box-Muller from ``hash64`` of a counter, so they depend only on the
    seed (not on numpy's random streams) and indexes built apart agree."""
    key = splitmix64(seed ^ _HYPERPLANE_DOMAIN, 1)[0]
    draws = hash_keys(np.arange(2 * bits * dim, dtype=np.uint64), key)
    uniform = ((draws >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53   # in (0, 1)
    radius = np.sqrt(-2.0 * np.log(uniform[0::2]))
    planes = (radius * np.cos(2.0 * np.pi * uniform[1::2])).reshape(bits, dim)
    return planes / np.linalg.norm(planes, axis=1, keepdims=True)


def _first_repeated(array: np.ndarray):
    values, counts = np.unique(array, return_counts=True)
    return values[counts > 1][0]
