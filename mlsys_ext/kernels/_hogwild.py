"""Hogwild! SGD: a binary linear classifier on sparse rows, trained by workers that update
one shared weight vector without locks; with a locked and a serial run to compare."""
from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._backends import resolve_backend
from ._hogwild_numba import _loss_and_accuracy, _margins, _sgd_epoch, _sgd_shard
from ._jit import check_threads, compile_kernel, numba_threads

LOSSES = ("log", "hinge")
MODES = ("hogwild", "locked", "serial")
GPU_WORKERS = 1 << 14  # GPU threads when ``threads`` is None: plenty of racing writers, few collisions


@dataclass(frozen=True)
class SGDResult:
    """What ``hogwild_sgd`` learned, how it went, and the settings it ran with."""
    weights: np.ndarray  # (d,), X's dtype; no intercept
    history: pd.DataFrame  # one row per epoch: epoch, loss, accuracy (on the training data), seconds
    compile_seconds: float  # JIT time (0.0 when already compiled), not in ``history.seconds``
    classes: np.ndarray  # (negative, positive) labels as given in y: [0, 1] or [-1, 1]
    loss: str
    mode: str
    threads: int  # workers that ran: 1 for serial, GPU threads on a GPU backend
    epochs: int
    lr: float
    seed: int | None
    backend: str

    def decision_function(self, X) -> np.ndarray:
        """``X @ weights`` for each row: positive means the positive class."""
        X = _check_X(X)
        if X.shape[1] != self.weights.shape[0]:
            raise ValueError(f"X has {X.shape[1]} features, the model {self.weights.shape[0]}")
        return _margins_of(X, self.weights)

    def predict(self, X) -> np.ndarray:
        """Labels in y's own encoding."""
        return np.where(self.decision_function(X) > 0, self.classes[1], self.classes[0])


def hogwild_sgd(X, y, loss: str = "log", epochs: int = 5, lr: float = 0.1, threads: int | None = None,
                mode: str = "hogwild", seed: int | None = None, backend: str = "auto") -> SGDResult:
    """Train ``sign(x . w)`` by SGD over the rows of ``X``, ``epochs`` passes, each in a new order.

    X: scipy sparse (n, d), float32 or float64; CSR is used as is, other sparse formats are
    converted (a copy), and repeated indices in a row are summed (a copy). y: n labels, two
    classes, labelled {0, 1} or {-1, +1}. ``loss``: "log" (logistic) or "hinge" (linear SVM).
    Each step takes one row: ``w -= lr * dloss/dmargin * x``, writing only the row's
    coordinates; w and its arithmetic have X's dtype, as in sklearn's SGDClassifier. ``lr`` is constant; there is no intercept (append a column of ones to X for
    one: that coordinate is then written by every step) and no regularisation.

    ``mode``:
      "hogwild"  ``threads`` workers, each through a contiguous shard of the epoch's shuffled
                 order, all reading and writing the one ``w`` with no lock: updates may be lost
                 or read half-applied, which sparse rows make rare (Niu et al., 2011).
      "locked"   the same workers, each step (read w, gradient, write w) under one global spin
                 lock (an atomic compare-and-swap): no update is lost, but the steps run one at
                 a time, the lock's cache line moves between cores, and on a busy machine a
                 waiter spins while the holder is descheduled. CPU only.
      "serial"   one worker over the whole order; ``threads`` is ignored.
    ``threads`` defaults to numba's thread pool; on a GPU backend it counts GPU threads
    (default ``min(n, 16384)``), worker t taking rows t, t + threads, ... of the order.

    The orders come from ``numpy.random.default_rng(seed)``, one permutation per epoch, drawn
    outside the clock: the same seed gives the same orders, so serial runs repeat bit for bit,
    and hogwild with one thread equals serial. ``backend``: "numba" (CPU threads), "numba-cuda"
    or "cupy" (the same numba.cuda kernel), "numpy" (the serial reference, a Python loop), or
    "auto". ``history.seconds`` times the update passes only; the loss and accuracy after each
    epoch are computed in a separate pass, and JIT time goes to ``compile_seconds``.
    """
    X = _check_X(X)
    n, d = X.shape
    labels, classes = _check_y(y, n, X.dtype)
    _check_choice("loss", loss, LOSSES)
    _check_choice("mode", mode, MODES)
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    backend = resolve_backend(backend)
    workers = _check_workers(threads, mode, backend, n)
    rng = np.random.default_rng(seed)
    w = np.zeros(d, dtype=X.dtype)
    arrays = (X.indptr, X.indices, X.data, labels)
    hinge = loss == "hinge"
    compile_seconds = compile_kernel(_loss_and_accuracy, X.indptr, X.indices, X.data, w, labels, hinge)
    rows = []

    def score(w_now, seconds):  # after each epoch, off the clock
        rows.append((len(rows) + 1, *_loss_and_accuracy(X.indptr, X.indices, X.data, w_now, labels, hinge),
                     seconds))

    if backend == "numba":
        compile_seconds += _train_numba(arrays, rng, epochs, w, lr, hinge, mode, workers, score)
    elif backend == "numpy":
        _train_numpy(arrays, rng, epochs, w, lr, hinge, score)
    else:
        from ._hogwild_cuda import cupy_device, numba_device, train_on_device

        device = cupy_device() if backend == "cupy" else numba_device()
        orders = [rng.permutation(n) for _ in range(epochs)]
        compile_seconds += train_on_device(device, *arrays, orders, w, lr, hinge, workers, score)
    history = pd.DataFrame(rows, columns=["epoch", "loss", "accuracy", "seconds"])
    return SGDResult(w, history, compile_seconds, classes, loss, mode, workers, int(epochs), float(lr), seed,
                     backend)


def sparse_classification(n: int, d: int, nnz_per_row: int, seed: int = 0,
                          dtype=np.float64) -> tuple[sp.csr_matrix, np.ndarray]:
    """A linearly separable problem: ``n`` CSR rows of ``nnz_per_row`` random columns out of
    ``d`` (repeats summed, so a few rows have fewer), values N(0, 1/nnz_per_row) so rows have
    norm about 1, and labels {0, 1}: whether ``x . w_true > 0`` for a seeded Gaussian ``w_true``."""
    for name, value in (("n", n), ("d", d), ("nnz_per_row", nnz_per_row)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if nnz_per_row > d:
        raise ValueError(f"nnz_per_row ({nnz_per_row}) must be at most d ({d})")
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    rng = np.random.default_rng(seed)
    index_dtype = np.int32 if max(d, n * nnz_per_row) < 2**31 else np.int64
    indices = rng.integers(0, d, size=n * nnz_per_row, dtype=index_dtype)
    data = rng.standard_normal(n * nnz_per_row, dtype=dtype) / dtype.type(math.sqrt(nnz_per_row))
    indptr = np.arange(0, n * nnz_per_row + 1, nnz_per_row, dtype=index_dtype)
    X = sp.csr_matrix((data, indices, indptr), shape=(n, d))
    X.sum_duplicates()
    w_true = rng.standard_normal(d)
    return X, (X @ w_true > 0).astype(np.int64)


def _train_numba(arrays, rng, epochs, w, lr, hinge, mode, workers, score) -> float:
    """Train ``w`` in place, calling ``score(w, seconds)`` after each epoch; the JIT seconds."""
    n = arrays[3].shape[0]
    lr = w.dtype.type(lr)
    lock = np.zeros(1, dtype=np.int64)
    locked = mode == "locked"
    bounds = np.linspace(0, n, workers + 1).astype(np.int64)  # contiguous shards of each order
    an_order = np.empty(0, dtype=np.int64)
    if mode == "serial":
        compile_seconds = compile_kernel(_sgd_shard, *arrays, an_order, w, lr, hinge, locked, lock)
    else:
        compile_seconds = compile_kernel(_sgd_epoch, *arrays, an_order, bounds, w, lr, hinge, locked, lock)
    with numba_threads(workers):
        for _ in range(epochs):
            order = rng.permutation(n)
            start = time.perf_counter()
            if mode == "serial":
                _sgd_shard(*arrays, order, w, lr, hinge, locked, lock)
            else:
                _sgd_epoch(*arrays, order, bounds, w, lr, hinge, locked, lock)
            score(w, time.perf_counter() - start)
    return compile_seconds


def _train_numpy(arrays, rng, epochs, w, lr, hinge, score) -> None:
    n = arrays[3].shape[0]
    for _ in range(epochs):
        order = rng.permutation(n)
        start = time.perf_counter()
        _sgd_shard_numpy(*arrays, order, w, lr, hinge)
        score(w, time.perf_counter() - start)


def _sgd_shard_numpy(indptr, indices, data, y, rows, w, lr, hinge):
    """The serial reference: ``_sgd_shard``'s steps in numpy (rows must not repeat an index)."""
    for row in rows:
        columns = indices[indptr[row]:indptr[row + 1]]
        values = data[indptr[row]:indptr[row + 1]]
        label = float(y[row])
        z = label * float(w[columns] @ values)
        if hinge:
            gradient = -label if z < 1.0 else 0.0
        elif z > 0.0:
            gradient = -label * math.exp(-z) / (1.0 + math.exp(-z))
        else:
            gradient = -label / (1.0 + math.exp(z))
        step = -lr * gradient
        if step != 0.0:
            w[columns] += step * values


def _margins_of(X, w) -> np.ndarray:
    out = np.empty(X.shape[0])
    compile_kernel(_margins, X.indptr, X.indices, X.data, w, out)
    _margins(X.indptr, X.indices, X.data, w, out)
    return out


def _check_X(X):
    if not sp.issparse(X):
        raise TypeError(f"X must be a scipy.sparse matrix (CSR; other sparse formats are converted), "
                        f"got {type(X).__module__}.{type(X).__name__}")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D (rows, features), got shape {X.shape}")
    if X.dtype not in (np.float32, np.float64):
        raise TypeError(f"X.dtype must be float32 or float64, got {X.dtype}")
    if X.format != "csr":
        X = X.tocsr()
    if not X.has_canonical_format:
        X = X.copy()
        X.sum_duplicates()
    if X.shape[0] == 0:
        raise ValueError("X has no rows")
    if not np.isfinite(X.data).all():
        raise ValueError("X holds NaN or infinite values")
    return X


def _check_y(y, n, dtype) -> tuple[np.ndarray, np.ndarray]:
    """y as +1.0 / -1.0 in ``dtype``, and the (negative, positive) labels as given."""
    dtype = np.dtype(dtype)
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"y must be 1-D with one label per row of X ({n}), got shape {y.shape}")
    classes = _two_classes(y)
    if classes is None:
        classes = np.unique(y)  # sorting the labels costs more than an epoch's scoring: only to say what is wrong
        raise ValueError(f"y must hold two classes labelled {{0, 1}} or {{-1, +1}}, got labels "
                         f"{classes[:5].tolist()}{' ...' if len(classes) > 5 else ''}")
    return np.where(y == classes[1], dtype.type(1.0), dtype.type(-1.0)), classes


def _two_classes(y) -> np.ndarray | None:
    """``np.unique(y)`` when y holds exactly the labels {0, 1} or {-1, +1}, else None, from its
    extremes and one comparison pass."""
    if y.size == 0 or y.dtype.kind not in "biuf":
        return None
    low, high = y.min(), y.max()
    if (low, high) not in ((0, 1), (-1, 1)) or not ((y == low) | (y == high)).all():
        return None
    return np.array([low, high], dtype=y.dtype)


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def _check_workers(threads, mode, backend, n) -> int:
    if backend == "numpy" and mode != "serial":
        raise ValueError(f"backend 'numpy' is the serial reference: use mode='serial' (got {mode!r})")
    if backend in ("numba-cuda", "cupy"):
        if mode == "locked":
            raise ValueError(f"mode 'locked' runs on the numba backend only (got backend {backend!r}): "
                             "one lock around every update would serialise the GPU's threads")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, numbers.Integral)
                                    or threads < 1):
            raise ValueError(f"threads must be a positive integer (GPU threads here), got {threads!r}")
        return 1 if mode == "serial" else int(threads or min(n, GPU_WORKERS))
    workers = check_threads(threads)
    return 1 if mode == "serial" else workers
