"""Actors in worker processes, a faulty network between them, and a message trace.

    from mlsys_ext.cluster import Cluster
    with Cluster(4) as cluster:
        c = cluster.spawn(Counter, 10, name="c0", max_restarts=1)
        c.incr.remote(5).result(timeout=5)

Pure core: no IPython or widget imports (``mlsys_ext.jupyter`` adds those).
"""
from ._cluster import (Cluster, SharedMemoryUse, WorkerResult, check_workers, live_clusters, max_workers,
                       register_backend)
from ._context import ActorContext, context
from ._errors import ActorDiedError, ActorTimeoutError, ClusterError, RemoteError, RemoteTraceback
from ._future import Future, gather
from ._handle import ActorHandle
from ._wire import ObjectRef


# The backends are chosen here, where clusters are made, and imported on first use (Ray only
# when asked for): the contract in _cluster.py imports neither, and both subclass it.
def _local_backend():
    from ._local import LocalCluster

    return LocalCluster


def _ray_backend():
    from ._ray import RayCluster

    return RayCluster


BACKENDS = ("local", "ray")
for _name, _load in zip(BACKENDS, (_local_backend, _ray_backend)):
    register_backend(_name, _load)
del _name, _load

__all__ = [
    "BACKENDS",
    "ActorContext",
    "ActorDiedError",
    "ActorHandle",
    "ActorTimeoutError",
    "Cluster",
    "ClusterError",
    "Future",
    "ObjectRef",
    "RemoteError",
    "RemoteTraceback",
    "SharedMemoryUse",
    "WorkerResult",
    "check_workers",
    "context",
    "gather",
    "live_clusters",
    "max_workers",
    "register_backend",
]
