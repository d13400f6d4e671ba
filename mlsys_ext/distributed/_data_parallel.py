"""Data-parallel SGD on the actor cluster: each worker holds a shard of the rows, and the
workers' mini-batch gradients meet by all-reduce, by a synchronous parameter server, or by
an asynchronous one that bounds staleness (stale-synchronous parallel).

* ``sync="allreduce"``: every round, each rank computes its batch's gradient and the ranks
  all-reduce it (ring or binomial tree, rank to rank); each applies the mean, so all hold
  the same weights. The driver only starts the rounds.
* ``sync="ps"``: each worker pulls the weights, pushes its gradient; the server applies
  the mean once every worker's gradient of the round is in, and answers the next round's
  pulls only then (bulk-synchronous). Equal to ``"allreduce"`` and to the sequential run.
* ``sync="async"``: the server applies each gradient as it arrives, and answers a pull for
  round t only when t - (the slowest worker's finished rounds) <= ``staleness`` (Ho et
  al., 2013): a fast worker waits, a pull never sees weights staler than the bound. Each
  answered pull is logged with the clocks, so violations are counted, not assumed.

``jitter`` (seconds): before each round's gradient, every worker waits a random time
(exponential, this mean, seeded per worker): machines of uneven speed. The synchronous
modes then wait for the slowest worker every round; the asynchronous one lets the others
run up to ``staleness`` rounds ahead.

``compression`` (parameter-server modes): ``"fp16"`` sends gradients as float16;
``"topk"`` sends the ``topk`` share of coordinates with the largest magnitude (indices and
values) and keeps what it left out as error feedback, added to the next gradient.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import numbers
import time
from dataclasses import dataclass

import numpy as np

from ..cluster import Cluster, ClusterError, context
from ._collectives import _Rank

SYNCS = ("allreduce", "ps", "async")
COMPRESSIONS = (None, "fp16", "topk")
LOSSES = ("log", "squared")


def gradient(w: np.ndarray, X: np.ndarray, y: np.ndarray, loss: str) -> np.ndarray:
    """The mean gradient over the rows of ``X`` of the logistic loss (labels 0/1) or half
    the squared error."""
    margins = X @ w
    residual = 1.0 / (1.0 + np.exp(-margins)) - y if loss == "log" else margins - y
    return X.T @ residual / len(y)


def training_loss(w: np.ndarray, X: np.ndarray, y: np.ndarray, loss: str) -> float:
    margins = X @ w
    if loss == "log":
        return float(np.mean(np.logaddexp(0.0, margins) - y * margins))
    return float(0.5 * np.mean((margins - y) ** 2))


def batches(n_rows: int, workers: int, batch_size: int, epochs: int, seed: int) -> list[list[np.ndarray]]:
    """Row indices of each round's batch for each worker: worker k holds the contiguous
    shard k of the rows and goes through it in a new seeded order each epoch, in batches
    of ``batch_size`` (the remainder of a shard is left out, so every round has one batch
    per worker)."""
    bounds = np.linspace(0, n_rows, workers + 1).astype(np.int64)
    per_epoch = max(1, int(np.diff(bounds).min()) // batch_size)
    rounds = []
    for epoch in range(epochs):
        orders = [bounds[k] + np.random.default_rng([seed, epoch, k]).permutation(bounds[k + 1] - bounds[k])
                  for k in range(workers)]
        rounds += [[order[b * batch_size:(b + 1) * batch_size] for order in orders] for b in range(per_epoch)]
    return rounds


def sequential_sgd(X, y, workers: int, loss: str = "log", lr: float = 0.5, epochs: int = 1, batch_size: int = 32,
                   seed: int = 0) -> tuple[np.ndarray, list[float]]:
    """The single-process run data-parallel SGD must equal: each round, the mean of every
    worker's batch gradient at the same weights. Returns the weights and the loss after
    each round."""
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)
    w = np.zeros(X.shape[1])
    losses = []
    for rows in batches(len(X), workers, batch_size, epochs, seed):
        w = w - lr * np.mean([gradient(w, X[r], y[r], loss) for r in rows], axis=0)
        losses.append(training_loss(w, X, y, loss))
    return w, losses


@dataclass
class DataParallelResult:
    weights: np.ndarray
    history: object  # DataFrame: round, loss, seconds (since training started, the actors built), bytes (payload moved that round)
    bytes_per_round: float  # measured: the mean payload bytes of a round, every worker's together
    formula_bytes_per_round: float  # the same, by the formula for this sync and compression
    staleness_violations: int  # answered pulls staler than the bound, counted from ``pulls``
    pulls: object  # DataFrame (parameter-server modes; None for all-reduce): worker, round, and
    #                the slowest worker's finished rounds when the pull was answered
    sync: str
    workers: int
    compression: str | None


class _SGDRank(_Rank):
    """A rank that holds a shard of the rows: each round it all-reduces its batch's gradient
    with the other ranks and applies the mean."""

    def __init__(self, rank: int, ranks: int, rounds, loss: str, lr: float, algorithm: str, waits):
        super().__init__(rank, ranks)
        self.rounds, self.loss, self.lr, self.algorithm, self.waits = rounds, loss, lr, algorithm, waits

    def hold(self, X, y) -> None:
        """This rank's shard (large arrays arrive as read-only shared-memory views)."""
        self.X, self.y = X, y
        self.w = np.zeros(X.shape[1])

    def step(self, t: int):
        """Round ``t``: the batch's gradient, all-reduced; answered once the mean is applied."""
        rows = self.rounds[t]
        if self.waits is not None:
            time.sleep(self.waits[t])
        self.load(t, self.algorithm, gradient(self.w, self.X[rows], self.y[rows], self.loss))
        return self.run(t)

    def _finish(self, call: int) -> None:
        c = self._done(call)
        self.w -= self.lr * c.work / self.ranks
        c.reply.send((self.w if self.rank == 0 else None, self._stats(c)))


class _ParameterServer:
    """The weights, updated by the workers' pushes; pulls answered within the staleness bound
    (synchronous: a round's mean applied once every worker's gradient of it is in)."""

    def __init__(self, dim: int, workers: int, lr: float, synchronous: bool, staleness: int):
        self.w = np.zeros(dim)
        self.workers, self.lr, self.synchronous, self.staleness = workers, lr, synchronous, staleness
        self.clocks = np.zeros(workers, dtype=np.int64)  # rounds each worker has pushed
        self.pending: dict[int, list] = {}  # synchronous: round -> gradients in so far
        self.waiting: list = []  # (worker, round, deferred answer) of pulls held back
        self.pulls: list = []  # (worker, round, slowest worker's clock) of every answered pull
        self.snapshots: list = []  # (time, pushes applied, weights) after each round's worth of pushes
        self.pushed_bytes = self.pulled_bytes = 0
        self.applied = 0
        self.start = time.monotonic()

    def begin(self) -> None:
        """Training starts now: snapshot times count from here, as the all-reduce mode's do."""
        self.start = time.monotonic()

    def pull(self, worker: int, t: int):
        if self._may_answer(t):
            return self._answer(worker, t)
        self.waiting.append((worker, t, context().defer()))
        return None

    def _may_answer(self, t: int) -> bool:
        slowest = int(self.clocks.min())
        return t <= slowest if self.synchronous else t - slowest <= self.staleness

    def _answer(self, worker: int, t: int) -> np.ndarray:
        self.pulls.append((worker, t, int(self.clocks.min())))
        self.pulled_bytes += self.w.nbytes
        return self.w

    def push(self, worker: int, t: int, update) -> None:
        self.pushed_bytes += sum(part.nbytes for part in update)
        g = _decompress(update, len(self.w))
        if self.synchronous:
            arrived = self.pending.setdefault(t, [])
            arrived.append(g)
            if len(arrived) == self.workers:
                self.w = self.w - self.lr * np.mean(self.pending.pop(t), axis=0)
                self._applied(self.workers)
        else:
            self.w = self.w - self.lr * g / self.workers
            self._applied(1)
        self.clocks[worker] += 1
        for entry in [e for e in self.waiting if self._may_answer(e[1])]:
            self.waiting.remove(entry)
            entry[2].send(self._answer(entry[0], entry[1]))

    def _applied(self, pushes: int) -> None:
        before = self.applied
        self.applied += pushes
        if self.applied // self.workers > before // self.workers:
            self.snapshots.append((time.monotonic() - self.start, self.applied, self.w.copy()))

    def report(self) -> dict:
        return {"pulls": self.pulls, "snapshots": self.snapshots, "pushed_bytes": self.pushed_bytes,
                "pulled_bytes": self.pulled_bytes}


class _PSWorker:
    """A worker of the parameter-server modes: pull, gradient, push, for every round."""

    def __init__(self, rank: int, rounds, loss: str, compression: str | None, topk: float, waits):
        self.rank = rank
        self.rounds, self.loss, self.compression, self.topk, self.waits = rounds, loss, compression, topk, waits

    def hold(self, X, y) -> None:
        """This worker's shard (large arrays arrive as read-only shared-memory views)."""
        self.X, self.y = X, y
        self.residual = np.zeros(X.shape[1])  # top-k's error feedback

    def train(self, server, timeout: float) -> None:
        for t, rows in enumerate(self.rounds):
            w = server.pull.remote(self.rank, t).result(timeout)  # this actor waits; the server answers
            if self.waits is not None:
                time.sleep(self.waits[t])
            g = gradient(w, self.X[rows], self.y[rows], self.loss)
            server.push.send(self.rank, t, self._compress(g))

    def _compress(self, g: np.ndarray) -> tuple:
        if self.compression == "fp16":
            return (g.astype(np.float16),)
        if self.compression == "topk":
            v = g + self.residual
            keep = max(1, math.ceil(self.topk * len(v)))
            index = np.argpartition(np.abs(v), len(v) - keep)[len(v) - keep:]
            self.residual = v.copy()
            self.residual[index] = 0.0
            return index.astype(np.int64), v[index]
        return (g,)


def _decompress(update: tuple, dim: int) -> np.ndarray:
    if len(update) == 2:  # top-k: indices and values
        g = np.zeros(dim)
        g[update[0]] = update[1]
        return g
    return update[0].astype(np.float64)


def formula_bytes(sync: str, workers: int, dim: int, compression: str | None, topk: float) -> float:
    """Payload bytes of one round, every worker's together: a ring all-reduce of the float64
    gradient moves 2(n-1) x 8d; a parameter server takes n pushes (8d, 2d in float16, or
    16 per top-k coordinate) and gives n pulls of 8d."""
    if sync == "allreduce":
        return 2.0 * (workers - 1) * 8 * dim
    push = {None: 8 * dim, "fp16": 2 * dim, "topk": 16 * max(1, math.ceil(topk * dim))}[compression]
    return workers * (push + 8.0 * dim)


_runs = itertools.count()


def data_parallel_sgd(cluster: Cluster, X, y, workers: int | None = None, sync: str = "allreduce",
                      staleness: int = 0, compression: str | None = None, loss: str = "log", lr: float = 0.5,
                      epochs: int = 1, batch_size: int = 32, topk: float = 0.01, algorithm: str = "ring",
                      jitter: float = 0.0, seed: int = 0, timeout: float | None = None) -> DataParallelResult:
    """Train a linear model (``loss`` "log": logistic regression on labels 0/1, "squared":
    least squares) by mini-batch SGD on ``workers`` actors of ``cluster``, each holding a
    contiguous shard of the rows (``batches`` says which rows each round takes). See the
    module's docstring for ``sync``, ``staleness`` and ``compression``; ``algorithm`` is the
    all-reduce's ("ring" or "tree"); ``jitter``, the mean seconds each worker waits before a
    round's gradient (a machine of uneven speed; 0: none). The synchronous modes equal ``sequential_sgd`` to
    rounding. The actors are made for this run and removed at its end."""
    import pandas as pd

    X, y, workers = _check(cluster, X, y, workers, sync, staleness, compression, loss, lr, epochs, batch_size,
                           topk, algorithm, jitter, timeout)
    timeout = cluster.timeout if timeout is None else float(timeout)
    rounds = batches(len(X), workers, batch_size, epochs, seed)
    bounds = np.linspace(0, len(X), workers + 1).astype(np.int64)
    shards = [(X[bounds[k]:bounds[k + 1]], y[bounds[k]:bounds[k + 1]]) for k in range(workers)]
    local_rounds = [[rows[k] - bounds[k] for rows in rounds] for k in range(workers)]  # shard-relative rows
    waits = [np.random.default_rng([seed, 1, k]).exponential(jitter, len(rounds)).tolist() if jitter else None
             for k in range(workers)]
    run = f"dpsgd{next(_runs)}"
    made = []  # this run's actors, removed at its end

    def spawn(cls, *args, name: str, worker: str):
        made.append(cluster.spawn(cls, *args, name=name, worker=worker))
        return made[-1]

    try:
        place = cluster.workers
        if sync == "allreduce":
            ranks = [spawn(_SGDRank, k, workers, local_rounds[k], loss, lr, algorithm, waits[k],
                           name=f"{run}-rank{k}", worker=place[k % len(place)]) for k in range(workers)]
            cluster.gather([r.connect.remote(ranks, []) for r in ranks]
                           + [r.hold.remote(*shard) for r, shard in zip(ranks, shards)], timeout=timeout)
            rows, sent = [], []
            start = time.perf_counter()  # the actors are built and hold their rows: training starts
            for t in range(len(rounds)):
                answers = cluster.gather([r.step.remote(t) for r in ranks], timeout=timeout)
                w = np.array(answers[0][0])
                sent.append(sum(stats["sent_bytes"] for _, stats in answers))
                rows.append((t + 1, training_loss(w, X, y, loss), time.perf_counter() - start, sent[-1]))
            violations, pulls = 0, None
        else:
            server = spawn(_ParameterServer, X.shape[1], workers, lr, sync == "ps", staleness,
                           name=f"{run}-server", worker=place[workers % len(place)])
            actors = [spawn(_PSWorker, k, local_rounds[k], loss, compression, topk, waits[k],
                            name=f"{run}-worker{k}", worker=place[k % len(place)]) for k in range(workers)]
            cluster.gather([a.hold.remote(*shard) for a, shard in zip(actors, shards)]
                           + [server.begin.remote()], timeout=timeout)
            cluster.gather([a.train.remote(server, timeout) for a in actors], timeout=timeout * len(rounds))
            report = server.report.remote().result(timeout)
            w = np.array(report["snapshots"][-1][2])
            per_round = (report["pushed_bytes"] + report["pulled_bytes"]) / len(rounds)
            rows = [(i + 1, training_loss(np.asarray(weights), X, y, loss), seconds, per_round)
                    for i, (seconds, _, weights) in enumerate(report["snapshots"])]
            pulls = pd.DataFrame(report["pulls"], columns=["worker", "round", "slowest"])
            violations = int((pulls["round"] - pulls.slowest > (0 if sync == "ps" else staleness)).sum())
    finally:
        for actor in made:
            with contextlib.suppress(ClusterError):  # a stopped cluster removed them already
                cluster.remove(actor.name)
    history = pd.DataFrame(rows, columns=["round", "loss", "seconds", "bytes"])
    return DataParallelResult(w, history, float(history.bytes.mean()),
                              formula_bytes(sync, workers, X.shape[1], compression, topk), violations, pulls,
                              sync, workers, compression)



def _check(cluster, X, y, workers, sync, staleness, compression, loss, lr, epochs, batch_size, topk, algorithm,
           jitter, timeout):
    """Every argument checked before any actor is made; X and y as float64 arrays."""
    if not isinstance(cluster, Cluster):
        raise TypeError(f"cluster must be a mlsys_ext.cluster.Cluster, got {type(cluster).__name__}")
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if X.ndim != 2 or y.ndim != 1 or len(X) != len(y):
        raise ValueError(f"X must be (n, d) and y (n,), got {X.shape} and {y.shape}")
    if not (np.isfinite(X).all() and np.isfinite(y).all()):
        raise ValueError("X and y must be finite (no NaN or infinity)")
    workers = cluster.n if workers is None else workers
    for name, value, least in (("workers", workers, 1), ("epochs", epochs, 1), ("batch_size", batch_size, 1),
                               ("staleness", staleness, 0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    if len(X) < workers * batch_size:
        raise ValueError(f"{len(X)} rows cannot give {workers} workers a batch of {batch_size} each")
    for name, value, choices in (("sync", sync, SYNCS), ("compression", compression, COMPRESSIONS),
                                 ("loss", loss, LOSSES), ("algorithm", algorithm, ("ring", "tree"))):
        if value not in choices:
            raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")
    if loss == "log" and not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("the log loss needs labels 0 and 1")
    if compression is not None and sync == "allreduce":
        raise ValueError("compression is for the parameter-server modes ('ps', 'async'): all-reduce sums "
                         "dense gradients")
    if staleness and sync != "async":
        raise ValueError("staleness bounds the asynchronous mode only (sync='async')")
    for name, value in (("lr", lr), ("topk", topk)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    if isinstance(jitter, bool) or not isinstance(jitter, numbers.Real) or not (0 <= jitter <= 1):
        raise ValueError(f"jitter must be from 0 to 1 second, got {jitter!r}")
    if topk > 1:
        raise ValueError(f"topk is a share of the coordinates, in (0, 1], got {topk!r}")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, numbers.Real)
                                or not timeout > 0):
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    return X, y, int(workers)
