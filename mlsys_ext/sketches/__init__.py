"""Probabilistic sketches: seeded 64-bit hashing, Bloom filters, Count-Min sketches,
MinHash and LSH (MinHash bands, SimHash hyperplanes), fast on numpy batches.

    from mlsys_ext.sketches import BloomFilter, CountMinSketch, hash64
    bf = BloomFilter(capacity=1_000_000, fpr=0.01, kind="blocked")
    bf.add_many(np.arange(1_000_000))
    bf.contains_many(np.arange(10))        # array([ True,  True, ...])
    bf.fpr_exact(len(bf)), bf.fpr_classic(len(bf))

    cms = CountMinSketch(eps=0.001, delta=0.01)
    cms.add_many(stream)                   # keys, optionally with counts=
    cms.estimate_many(keys), cms["word"], cms.error_bound()

    mh = MinHash(num_perm=128)
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    lsh.insert_many(names, mh.signatures(token_sets))
    lsh.query(mh.signature(tokens))        # candidate near-duplicates

Sketches built apart with equal parameters combine, one way for all of them:
``a.merge(b)`` adds b to a in place and returns a; ``a | b`` is a new sketch of both,
the operands unchanged.

Pure core: numpy and numba only, no IPython, widget or plotting imports (the
Jupyter wing adds panels on top). Kernels compile on first use and are cached.
"""
from ._bloom import BloomFilter
from ._countmin import CountMinSketch, TopK
from ._counting import CountingBloomFilter
from ._hashing import hash64
from ._lsh import MinHashLSH, SimHashLSH
from ._minhash import MinHash
from ._scalable import ScalableBloomFilter

__all__ = ["BloomFilter", "CountMinSketch", "CountingBloomFilter", "MinHash", "MinHashLSH", "ScalableBloomFilter", "SimHashLSH", "TopK",
           "hash64"]

