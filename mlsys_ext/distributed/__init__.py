"""Distributed systems on the actor cluster: MapReduce, all-reduce collectives, and sharding.

    from mlsys_ext.cluster import Cluster
    from mlsys_ext.distributed import mapreduce, word_count_map, word_count_reduce

    with Cluster(2) as cluster:
        res = mapreduce(cluster, ["the cat", "the dog"], word_count_map, word_count_reduce, n_reduce=2)
        res.output   # {'cat': 1, 'dog': 1, 'the': 2}; res.tasks: one row per attempt

    import numpy as np
    from mlsys_ext.distributed import ConsistentHashRing, keys_moved, load_balance, ring_load_cv

    ring = ConsistentHashRing(10, vnodes=100, seed=0)
    keys = np.random.default_rng(0).integers(0, 2**63, 1_000_000)
    ring.place(keys)                      # int64 shard id of each key
    load_balance(ring, keys).std_over_mean, ring_load_cv(10, 100, len(keys))
    keys_moved(ring, keys, "add")         # .moved near .ideal = 1/11 (within ~1/sqrt(v)), .not_monotone 0
    ring.add(10); ring.remove(3)

    from mlsys_ext.distributed import Collective

    with Cluster(2) as cluster:
        coll = Collective(cluster, ranks=4)          # ring, binomial tree or parameter server
        sums = coll.allreduce([np.ones(1 << 20, np.float32)] * 4, algorithm="ring")
        coll.stats                                    # nccl-tests' columns, payload bytes per rank
        res = data_parallel_sgd(cluster, X, y, workers=4, sync="async", staleness=2, compression="topk")
        res.history, res.staleness_violations         # loss per round; 0: the bound held

Schemes share one interface (``place``, ``add``, ``remove``, ``shards``,
``memory_bytes``, ``copy``): ``RangeSharding``, ``ModuloSharding``,
``ConsistentHashRing``, ``JumpHash``, ``RendezvousHashing``, ``MaglevHashing`` and
``BoundedLoadConsistentHashing``. Measurements follow the SUPSI consistent-hashing
benchmark suite: ``load_balance``, ``keys_moved``, ``monotonicity``; theory lines:
``ideal_moved_fraction``, ``ring_load_cv``, ``uniform_load_cv``. Hot keys:
``zipf_keys``, ``hottest``, ``salt_keys``/``salt_variants``, ``ShardedCounter`` and
``power_of_two_choices``.

Pure core: numpy and numba only, no IPython, widget or plotting imports.
"""
from ._collectives import ALGORITHMS, Collective, bus_bandwidth, ring_bytes_per_rank
from ._data_parallel import DataParallelResult, data_parallel_sgd, sequential_sgd
from ._hogwild_processes import hogwild_processes
from ._jobs import (
    inverted_index, inverted_index_map, inverted_index_reduce, kmeans_mapreduce, paced_word_count_map, pagerank,
    pagerank_mapreduce, word_count, word_count_map, word_count_reduce,
)
from ._mapreduce import MapReduceError, MapReduceResult, mapreduce, partitions
from ._sharding import (
    BoundedLoadConsistentHashing, ConsistentHashRing, JumpHash, KeysMoved, LoadBalance,
    MaglevHashing, ModuloSharding, Monotonicity, RangeSharding, RendezvousHashing, ShardedCounter,
    ShardingScheme, hottest, ideal_moved_fraction, keys_moved, load_balance, monotonicity,
    power_of_two_choices, ring_load_cv, salt_keys, salt_variants, uniform_load_cv, zipf_keys,
)

__all__ = ["ALGORITHMS", "BoundedLoadConsistentHashing", "Collective", "ConsistentHashRing", "DataParallelResult",
           "JumpHash", "KeysMoved", "LoadBalance", "MaglevHashing", "MapReduceError", "MapReduceResult",
           "ModuloSharding", "Monotonicity", "RangeSharding", "RendezvousHashing", "ShardedCounter",
           "ShardingScheme", "bus_bandwidth", "data_parallel_sgd", "hogwild_processes", "hottest", "ideal_moved_fraction",
           "inverted_index", "inverted_index_map", "inverted_index_reduce", "keys_moved", "kmeans_mapreduce",
           "load_balance", "mapreduce", "monotonicity", "paced_word_count_map", "pagerank", "pagerank_mapreduce",
           "partitions", "power_of_two_choices", "ring_bytes_per_rank", "ring_load_cv", "salt_keys", "salt_variants",
           "sequential_sgd", "uniform_load_cv", "word_count", "word_count_map", "word_count_reduce", "zipf_keys"]
