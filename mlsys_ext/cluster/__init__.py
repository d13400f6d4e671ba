"""Actors in worker processes, a faulty network between them, and a message trace.

    from mlsys_ext.cluster import Cluster
    with Cluster(4) as cluster:
        c = cluster.spawn(Counter, 10, name="c0", max_restarts=1)
        c.incr.remote(5).result(timeout=5)

Pure core: no IPython or widget imports (``mlsys_ext.jupyter`` adds those).
"""
from ._cluster import BACKENDS, Cluster, SharedMemoryUse, WorkerResult, check_workers, live_clusters, max_workers
from ._context import ActorContext, context
from ._errors import ActorDiedError, ActorTimeoutError, ClusterError, RemoteError, RemoteTraceback
from ._future import Future, gather
from ._handle import ActorHandle
from ._wire import ObjectRef

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
]
