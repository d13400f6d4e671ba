"""Probabilistic sketches: seeded 64-bit hashing and Bloom filters, fast on numpy batches.

    from mlsys_ext.sketches import BloomFilter, hash64
    bf = BloomFilter(capacity=1_000_000, fpr=0.01, kind="blocked")
    bf.add_many(np.arange(1_000_000))
    bf.contains_many(np.arange(10))        # array([ True,  True, ...])
    bf.fpr_exact(len(bf)), bf.fpr_classic(len(bf))

Pure core: numpy and numba only, no IPython, widget or plotting imports (the
Jupyter wing adds panels on top). Kernels compile on first use and are cached.
"""
from ._bloom import BloomFilter
from ._hashing import hash64

__all__ = ["BloomFilter", "hash64"]
