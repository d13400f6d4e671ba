"""``MinHash``: Jaccard-similarity signatures for many sets at once."""
from __future__ import annotations

from collections.abc import Collection, Mapping
from itertools import chain

import numpy as np

from .. import _threads
from . import _hash_kernels, _minhash_kernels
from ._hashing import SEED, hash_keys
from ._validation import Integer, validate

EMPTY = int(_minhash_kernels.EMPTY)
_P = int(_minhash_kernels.MERSENNE_61)
_MASK64 = 2**64 - 1
# Keeps the permutation coefficients of seed s apart from anything else derived from s.
_PERMUTATION_DOMAIN = 0x452821E638D01377
_PERMUTATIONS_PER_KEY = 8
_KERNELS = (_minhash_kernels.signatures, _minhash_kernels.signatures_parallel)
_BYTES_KERNELS = (_hash_kernels.hash_bytes, _hash_kernels.hash_bytes_parallel)
_SET_TYPES = ("a collection of tokens with a length (set, frozenset, list, tuple, range, "
              "1-D numpy array ...)")


class MinHash:
    """MinHash signatures: ``num_perm`` slots per set, each slot equal for two sets
    with probability their Jaccard similarity |A ∩ B| / |A ∪ B|.

        mh = MinHash(num_perm=128, seed=0)
        sigs = mh.signatures([{"a", "b", "c"}, {"b", "c", "d"}, np.arange(100)])
        mh.jaccard(sigs[0], sigs[1])          # about 0.5

    Tokens are what ``hash64`` accepts (integers, floats, str, bytes; ``"x"`` and
    ``b"x"`` are one token) and are hashed with it; slot i holds the minimum over
    the set of a seeded permutation (a_i h + b_i) mod (2**61 - 1) of the token
    hashes h, the coefficients drawn independently per slot from ``seed``. So a
    signature depends only on the set's tokens and ``seed``: not on their order,
    their multiplicity, the process or the machine, and signatures made apart
    compare (and index in one ``MinHashLSH``) if the seeds agree.

    An empty set's signature is ``MinHash.EMPTY`` (2**64 - 1) in every slot, a value
    no token produces: it matches no slot of a non-empty set (estimate 0) and every
    slot of another empty set (estimate 1, taking J(∅, ∅) = 1).

    Immutable and picklable; the batch builder runs over numba's threads.
    """

    EMPTY = EMPTY

    _parameter_constraints = {"num_perm": Integer(low=1, high=2**20), "seed": SEED}

    def __init__(self, num_perm: int = 128, seed: int = 0):
        validate(self._parameter_constraints, num_perm=num_perm, seed=seed)
        self._num_perm, self._seed = num_perm, seed
        self._a, self._b = permutation_coefficients(int(num_perm), int(seed))

    num_perm = property(lambda self: self._num_perm, doc="Slots per signature.")
    seed = property(lambda self: self._seed, doc="Seed of the token hashes and the permutations.")

    @property
    def coefficients(self) -> tuple[np.ndarray, np.ndarray]:
        """The permutations' (a, b), uint64 arrays of length ``num_perm`` (copies)."""
        return self._a.copy(), self._b.copy()

    def signatures(self, sets) -> np.ndarray:
        """The ``(len(sets), num_perm)`` uint64 signatures of a list or tuple of sets.

        Each set is a collection of tokens with a length (set, frozenset, list, tuple,
        range, 1-D numpy array ...); duplicates count once. The tokens of one set are
        of one kind, as ``hash64`` takes them: integers, floats, or str and bytes
        (sets of different kinds may share a call). A 2-D numpy array is taken as
        one set per row. A str is refused as a set: split it into tokens first.

        All tokens are hashed in one batch and the signatures built in one pass,
        spread over numba's threads (by tokens, so uneven sets share the work).
        """
        hashes, offsets = self._flatten(sets)
        out = np.empty((len(offsets) - 1, self._num_perm), dtype=np.uint64)
        # The work is one permutation per token and slot, about an eighth of the
        # hash64 of a key that ``_threads.run`` counts in (vectorised, ~0.5 ns).
        _threads.run(_KERNELS, len(hashes) * self._num_perm // _PERMUTATIONS_PER_KEY,
                     hashes, offsets, self._a, self._b, out)
        return out

    def signature(self, tokens) -> np.ndarray:
        """The ``(num_perm,)`` signature of one set (see ``signatures``)."""
        _check_set(tokens)
        return self.signatures([tokens])[0]

    def jaccard(self, sig_a, sig_b):
        """Estimated Jaccard similarity: the fraction of equal slots.

        ``sig_a`` and ``sig_b`` are signatures of this ``num_perm`` (made with the
        same seed), one each or arrays of them that broadcast against each other
        (e.g. ``(n, num_perm)`` and ``(n, num_perm)`` for n pairs, or one signature
        against ``(n, num_perm)``). Returns a float, or an array of the broadcast
        shape without the last axis. Each estimate is a binomial proportion: its
        standard error is sqrt(J (1 - J) / num_perm).
        """
        a, b = _as_signatures(sig_a, "sig_a"), _as_signatures(sig_b, "sig_b")
        for name, sig in (("sig_a", a), ("sig_b", b)):
            if sig.shape[-1] != self._num_perm:
                raise ValueError(f"{name} has {sig.shape[-1]} slots, but this MinHash has "
                                 f"num_perm={self._num_perm}")
        try:
            equal = np.count_nonzero(a == b, axis=-1)
        except ValueError:
            raise ValueError(f"sig_a of shape {a.shape} and sig_b of shape {b.shape} "
                             "do not broadcast against each other") from None
        estimate = equal / self._num_perm
        return float(estimate) if np.ndim(estimate) == 0 else estimate

    def _flatten(self, sets) -> tuple[np.ndarray, np.ndarray]:
        """All token hashes, set after set, and the int64 offsets of the sets."""
        if isinstance(sets, np.ndarray) and sets.ndim == 2:
            n, m = sets.shape
            return hash_keys(sets.reshape(-1), self._seed), np.arange(n + 1, dtype=np.int64) * m
        if not isinstance(sets, (list, tuple)):
            raise TypeError(f"signatures takes a list or tuple of sets (or a 2-D numpy array, one set "
                            f"per row), got {type(sets).__name__}; use signature for one set")
        for tokens in sets:
            _check_set(tokens)
        offsets = np.zeros(len(sets) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, sets), dtype=np.int64, count=len(sets)), out=offsets[1:])
        arrays = _numeric_arrays(sets)
        if arrays is not None:
            return hash_keys(arrays, self._seed), offsets
        try:
            return _hash_tokens(list(chain.from_iterable(sets)), self._seed), offsets
        except TypeError:
            # Sets of different kinds (ints in one, str in another): hash set by set,
            # which still refuses a set that mixes kinds itself, with hash64's message.
            if len(sets) < 2:
                raise
            return np.concatenate([_hash_tokens(list(tokens), self._seed) for tokens in sets]
                                  + [np.empty(0, np.uint64)]), offsets

    def __reduce__(self):
        return type(self), (self._num_perm, self._seed)

    def __eq__(self, other) -> bool:
        if not isinstance(other, MinHash):
            return NotImplemented
        return self._num_perm == other._num_perm and self._seed == other._seed

    def __hash__(self) -> int:
        return hash((MinHash, int(self._num_perm), int(self._seed)))

    def __repr__(self) -> str:
        return f"MinHash(num_perm={self._num_perm!r}, seed={self._seed!r})"


def permutation_coefficients(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The permutations' a (in [1, p)) and b (in [0, p)), p = 2**61 - 1, drawn from
    ``splitmix64``, so they depend on nothing but the seed. Part of every stored
    signature: do not change."""
    draws = splitmix64(seed ^ _PERMUTATION_DOMAIN, 2 * num_perm)
    # Range reduction by the top bits (multiply-shift): the bias is below 2**-60.
    a = [1 + ((z * (_P - 1)) >> 64) for z in draws[0::2]]
    b = [(z * _P) >> 64 for z in draws[1::2]]
    return np.array(a, dtype=np.uint64), np.array(b, dtype=np.uint64)


def splitmix64(seed: int, count: int) -> list[int]:
    """The first ``count`` outputs of Vigna's splitmix64 generator started at ``seed``,
    in Python integers: the same in every process and numpy version."""
    state, out = seed & _MASK64, []
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & _MASK64
        z = ((state ^ (state >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        out.append(z ^ (z >> 31))
    return out


def _check_set(tokens) -> None:
    if isinstance(tokens, (str, bytes, bytearray)):
        raise TypeError(f"a set of tokens must be {_SET_TYPES}, got the {type(tokens).__name__} "
                        f"{_preview(tokens)}, which would be taken character by character: "
                        "split it into tokens (e.g. shingles) first, or wrap it in a list")
    if isinstance(tokens, np.ndarray):
        if tokens.ndim != 1:
            raise ValueError(f"a set given as a numpy array must be 1-D, got shape {tokens.shape}")
        return
    if not isinstance(tokens, Collection) or isinstance(tokens, Mapping):
        raise TypeError(f"a set of tokens must be {_SET_TYPES}, got {type(tokens).__name__}")


def _preview(text) -> str:
    return repr(text if len(text) <= 20 else text[:20]) + ("..." if len(text) > 20 else "")


def _numeric_arrays(sets) -> np.ndarray | None:
    """When every set is a numpy array of integers (or every one of floats): all their
    tokens as one array with the values ``hash64`` would see. Else None."""
    if not sets or not all(isinstance(tokens, np.ndarray) for tokens in sets):
        return None
    kinds = {tokens.dtype.kind for tokens in sets}
    if kinds <= set("biu"):
        # Each as its 64-bit two's-complement pattern: concatenating int64 with
        # uint64 as they are would go through float64.
        return np.concatenate([t.astype(np.uint64 if t.dtype.kind == "u" else np.int64, copy=False)
                               .view(np.uint64) for t in sets])
    if kinds == {"f"} and all(t.dtype.itemsize <= 8 for t in sets):
        return np.concatenate([t.astype(np.float64, copy=False) for t in sets])
    return None


def _hash_tokens(tokens: list, seed: int) -> np.ndarray:
    """``hash_keys(tokens, seed)``, faster when every token is a str (or every one is
    bytes): one join for all of them rather than a type check and an encode per token."""
    try:
        text = "".join(tokens)          # raises TypeError unless every token is a str
    except TypeError:
        if not tokens or set(map(type, tokens)) != {bytes}:
            return hash_keys(tokens, seed)   # ints, floats, a mix, or refused with its message
        data = b"".join(tokens)
        lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
    else:
        data = text.encode("utf-8", "surrogatepass")
        if len(data) == len(text):      # all ASCII: a token's bytes are its characters
            lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
        else:
            lengths = np.fromiter((len(t.encode("utf-8", "surrogatepass")) for t in tokens),
                                  dtype=np.int64, count=len(tokens))
    offsets = np.zeros(len(tokens) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    out = np.empty(len(tokens), dtype=np.uint64)
    _threads.run(_BYTES_KERNELS, len(tokens), np.frombuffer(data, dtype=np.uint8), offsets,
                 np.uint64(seed), out)
    return out


def _as_signatures(sig, name: str) -> np.ndarray:
    array = np.asarray(sig)
    if array.ndim == 0 or array.dtype.kind not in "iu":
        raise TypeError(f"{name} must be a signature (an array of uint64 from MinHash.signatures), "
                        f"got {'a ' + str(array.dtype) + ' array' if array.ndim else type(sig).__name__}")
    return array
