"""Hogwild! across processes: the cluster's workers update one weight vector in shared
memory with no lock, each running the kernels lab's ``_sgd_shard`` on its share of every
epoch's order, as the kernels lab's threads do inside one process.

The weights live in a memfd the driver makes (no name in /dev/shm, so nothing can be
left behind): each worker opens it through ``/proc/<driver>/fd/<n>`` and maps it shared,
writable, then closes its descriptor. The memory goes when the driver and every worker
have unmapped it, whoever dies first.
"""
from __future__ import annotations

import contextlib
import itertools
import mmap
import os
import time

import numpy as np

from ..cluster import Cluster, ClusterError
from ..kernels import SGDResult
from ..kernels._hogwild import LOSSES, _check_choice, _check_X, _check_y
from ..kernels._hogwild_numba import _loss_and_accuracy, _sgd_shard
from ..kernels._jit import compile_kernel


class _HogwildWorker:
    """Maps the shared weights and runs SGD steps on them for the rows it is given."""

    def __init__(self):
        self.w = self.mapping = None

    def attach(self, pid: int, fd: int, dim: int, X_parts, labels) -> float:
        """Map the driver's weights and keep the rows (read-only shared views); the JIT seconds."""
        descriptor = os.open(f"/proc/{pid}/fd/{fd}", os.O_RDWR)
        try:
            self.mapping = mmap.mmap(descriptor, dim * 8)
        finally:
            os.close(descriptor)
        self.w = np.frombuffer(self.mapping, dtype=np.float64)
        self.indptr, self.indices, self.data = X_parts
        self.labels = labels
        self.lock = np.zeros(1, dtype=np.int64)
        return compile_kernel(_sgd_shard, self.indptr, self.indices, self.data, self.labels,
                              np.empty(0, dtype=np.int64), self.w, 0.0, False, False, self.lock)

    def steps(self, rows, lr: float, hinge: bool) -> float:
        """One SGD step per row of ``rows`` on the shared weights, racing the other workers; seconds."""
        start = time.perf_counter()
        _sgd_shard(self.indptr, self.indices, self.data, self.labels, rows, self.w, lr, hinge, False, self.lock)
        return time.perf_counter() - start

    def detach(self) -> None:
        self.w = None  # the array's buffer export ends with it, so the mapping may close
        self.mapping.close()


_runs = itertools.count()


def hogwild_processes(cluster: Cluster, X, y, workers: int | None = None, loss: str = "log", epochs: int = 5,
                      lr: float = 0.1, seed: int | None = None) -> SGDResult:
    """``hogwild_sgd``'s lock-free mode with ``workers`` processes of ``cluster`` for threads:
    each epoch a new seeded order, cut into one contiguous shard per worker, all updating
    the one shared float64 ``w`` at once. ``history.seconds`` is each epoch's wall time on
    the driver (the calls that start and finish the workers' shards included); the loss and
    accuracy after each epoch are computed apart. Same X, y, loss, lr as ``hogwild_sgd``."""
    import pandas as pd

    X = _check_X(X)
    n, d = X.shape
    labels, classes = _check_y(y, n, np.float64)
    _check_choice("loss", loss, LOSSES)
    workers = cluster.n if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    X = X.astype(np.float64)  # the shared weights are float64, and the kernel's w and data agree
    hinge = loss == "hinge"
    place = cluster.workers
    actors = [cluster.spawn(_HogwildWorker, name=f"hogwild{next(_runs)}-{k}", worker=place[k % len(place)])
              for k in range(workers)]
    fd = os.memfd_create("mlsys_ext-hogwild", os.MFD_CLOEXEC)
    mapping = None
    try:
        os.ftruncate(fd, d * 8)
        mapping = mmap.mmap(fd, d * 8)
        w = np.frombuffer(mapping, dtype=np.float64)
        parts = tuple(cluster.put(np.ascontiguousarray(a)) for a in (X.indptr, X.indices, X.data))
        shared_labels = cluster.put(labels)
        compile_seconds = max(cluster.gather([a.attach.remote(os.getpid(), fd, d, parts, shared_labels)
                                              for a in actors]))
        rng = np.random.default_rng(seed)
        bounds = np.linspace(0, n, workers + 1).astype(np.int64)
        rows = []
        for epoch in range(1, epochs + 1):
            order = rng.permutation(n)
            start = time.perf_counter()
            cluster.gather([a.steps.remote(order[bounds[k]:bounds[k + 1]], float(lr), hinge)
                            for k, a in enumerate(actors)])
            seconds = time.perf_counter() - start
            rows.append((epoch, *_loss_and_accuracy(X.indptr, X.indices, X.data, w, labels, hinge), seconds))
        weights = w.copy()
    finally:
        w = None
        if mapping is not None:
            mapping.close()
        os.close(fd)
        for a in actors:
            with contextlib.suppress(ClusterError):  # a dead worker's mapping went with it
                a.detach.send()
            with contextlib.suppress(ClusterError):  # the cluster stopped meanwhile
                cluster.remove(a.name)  # a dead actor's record goes too
    history = pd.DataFrame(rows, columns=["epoch", "loss", "accuracy", "seconds"])
    return SGDResult(weights, history, compile_seconds, classes, loss, "hogwild", workers, epochs, float(lr), seed,
                     f"processes ({cluster.backend})")

