"""``hash64``: seeded, well-mixed 64-bit hashes of integers, floats, str and bytes.

This module checks and converts keys; the hashing itself is in ``_hash_kernels``.
"""
from __future__ import annotations

import numpy as np

from .. import _threads
from . import _hash_kernels
from ._validation import Integer

SEED = Integer(low=0, high=2**64)

_INT_TYPES = (int, np.integer, np.bool_)  # bool is an int: True hashes as 1
_FLOAT_TYPES = (float, np.floating)
_BYTES_TYPES = (str, bytes, bytearray)
_KERNELS = {
    "int": (_hash_kernels.hash_ints, _hash_kernels.hash_ints_parallel),
    "float": (_hash_kernels.hash_float_bits, _hash_kernels.hash_float_bits_parallel),
    "bytes": (_hash_kernels.hash_bytes, _hash_kernels.hash_bytes_parallel),
}
_SUPPORTED = ("integers (any numpy width), float16/32/64, str, bytes, "
              "or a numpy array, list or tuple of one of these")


def hash64(keys, seed: int = 0):
    """Seeded 64-bit hashes of ``keys``, stable across processes, runs and machines.

    Keys may be one key or a numpy array, list, tuple or range of keys:

    - integers of any numpy width (and bools, as 0/1) hash by value: ``np.int8(-1)``
      and ``-1`` agree. Values are taken modulo 2**64, so ``-1`` and ``2**64 - 1``
      share a hash; Python ints outside ``[-2**63, 2**64)`` are refused.
    - floats (float16, float32, float64) hash by value too (``np.float32(0.5)`` and
      ``0.5`` agree), with ``-0.0`` equal to ``0.0`` and all NaNs equal. ``1`` and
      ``1.0`` are different keys, and a list mixing ints and floats is refused.
    - ``str`` hashes as its UTF-8 bytes, so ``"abc"`` and ``b"abc"`` are the same key.

    Returns an array of ``uint64`` of the input's shape (1-D for a list), or a
    ``numpy.uint64`` for a single key. Raises ``TypeError`` for anything else
    (None, complex, datetime, nested lists ...), naming what it got.
    """
    seed = SEED.check("seed", seed)
    if isinstance(keys, np.ndarray):
        return hash_keys(keys.ravel(), seed).reshape(keys.shape)
    if isinstance(keys, (list, tuple, range)):
        return hash_keys(key_batch(keys, "hash64", "hash64"), seed)
    if not _is_scalar_key(keys):
        raise TypeError(f"hash64 cannot hash {type(keys).__name__!r} keys; it hashes {_SUPPORTED}")
    return hash_keys([keys], seed)[0]


def hash_keys(keys, seed: int) -> np.ndarray:
    """Hashes of a 1-D array, list or tuple of keys as a flat uint64 array (seed checked)."""
    domain, prepared = _prepare(keys)
    out = np.empty(len(keys), dtype=np.uint64)
    _threads.run(_KERNELS[domain], len(keys), *prepared, np.uint64(seed), out)
    return out


def is_single_key(key) -> bool:
    """True for one hashable key (what ``BloomFilter.add`` and ``in`` take)."""
    return _is_scalar_key(key) or (isinstance(key, np.ndarray) and key.ndim == 0)


def single_key(key, operation: str, batch_operation: str):
    """The key itself, if it is one key; else a TypeError pointing to ``batch_operation``."""
    if not is_single_key(key):
        raise TypeError(f"{operation} takes one key (int, float, str or bytes), got "
                        f"{type(key).__name__}; use {batch_operation} for many")
    return key.item() if isinstance(key, np.ndarray) else key


def key_batch(keys, operation: str, single_operation: str):
    """A flat array or sequence of the keys, if they are a batch; else a TypeError
    pointing to ``single_operation``."""
    if isinstance(keys, np.ndarray):
        return keys.ravel()
    if isinstance(keys, (list, tuple)):
        return keys
    if isinstance(keys, range):
        return np.arange(keys.start, keys.stop, keys.step, dtype=np.int64)
    raise TypeError(f"{operation} takes a numpy array, list, tuple or range of keys, got "
                    f"{type(keys).__name__}; use {single_operation} for one key")


def _is_scalar_key(key) -> bool:
    return _domain_of_type(type(key)) is not None


def _domain_of_type(t: type) -> str | None:
    if issubclass(t, _INT_TYPES):
        return "int"
    if issubclass(t, _FLOAT_TYPES) and np.dtype(t).itemsize <= 8:
        return "float"
    if issubclass(t, _BYTES_TYPES):
        return "bytes"
    return None


def _prepare(keys):
    """(domain, kernel input arrays) for a 1-D array or a sequence of keys."""
    if isinstance(keys, np.ndarray):
        return _prepare_array(keys)
    types = set(map(type, keys))
    domains = {_domain_of_type(t) for t in types}
    if None in domains:
        bad = next(t for t in types if _domain_of_type(t) is None)
        raise TypeError(f"hash64 cannot hash a key of type {bad.__name__}; it hashes {_SUPPORTED}")
    if len(domains) > 1:
        names = ", ".join(sorted(t.__name__ for t in types))
        raise TypeError(f"keys mix {names}: ints, floats and str/bytes hash differently "
                        "(1 and 1.0 are different keys), so convert them to one kind first")
    domain = domains.pop() if domains else "int"  # an empty list: any domain gives no hashes
    if domain == "int":
        return "int", (_ints_to_uint64(keys),)
    if domain == "float":
        return "float", (np.asarray(keys, dtype=np.float64).view(np.uint64),)
    return "bytes", _pack_byte_strings(keys)


def _prepare_array(array: np.ndarray):
    kind = array.dtype.kind
    if kind in "bi":
        return "int", (np.ascontiguousarray(array, dtype=np.int64).view(np.uint64),)
    if kind == "u":
        return "int", (np.ascontiguousarray(array, dtype=np.uint64),)
    if kind == "f" and array.dtype.itemsize <= 8:
        return "float", (np.ascontiguousarray(array, dtype=np.float64).view(np.uint64),)
    if kind in "USO":
        return _prepare(array.tolist())
    hint = " (view it as int64 first)" if kind in "mM" else ""
    raise TypeError(f"hash64 cannot hash an array of dtype {array.dtype}{hint}; it hashes {_SUPPORTED}")


def _ints_to_uint64(keys) -> np.ndarray:
    """Python or numpy integers as their 64-bit two's-complement patterns."""
    try:
        return np.array(keys, dtype=np.int64).view(np.uint64)
    except OverflowError:
        pass  # some key is >= 2**63 (or out of range altogether)
    too_big = next((k for k in keys if not -2**63 <= k < 2**64), None)
    if too_big is not None:
        raise ValueError(f"integer key {too_big} does not fit in 64 bits: "
                         "hash64 takes integers in [-2**63, 2**64)")
    return np.array([int(k) % 2**64 for k in keys], dtype=np.uint64)


def _pack_byte_strings(keys):
    """One flat uint8 buffer and int64 offsets: key j is buffer[offsets[j]:offsets[j+1]]."""
    encoded = [k.encode("utf-8", "surrogatepass") if isinstance(k, str) else k for k in keys]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets
