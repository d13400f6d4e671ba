"""Hogwild SGD benchmark: ``hogwild_sgd`` against scikit-learn's SGDClassifier, one epoch each.

    .venv/bin/python benchmarks/kernels_hogwild.py     # about a minute on 2 cores

The problem: 200,000 rows x 2^18 features, ~50 nonzeros per row, float64 (the dtype
sklearn's text vectorisers produce; SGDClassifier keeps float32 or float64 as given), from
``sparse_classification``. Like for like, both run the logistic loss with a constant
learning rate 0.1, no intercept, no penalty, one shuffled pass. Per step sklearn's
``_plain_sgd`` reads one row, takes its dot product with w (times w's scale), computes the
loss (for its epoch report) and its gradient, clips it, and adds the scaled row to w (with
an L2 penalty it would also rescale w in O(1) through the weight scale; none here). Its time
is one whole ``fit(max_iter=1)`` call, whose input checks add a few ms; ours is the update
pass of one epoch (``history.seconds``), and "call s" is our whole call beside it.
Repeats are interleaved across the runs so load changes hit them alike.
"""
from __future__ import annotations

import os
import statistics
import time
import warnings

import numpy as np

from mlsys_ext import describe_machine
from mlsys_ext.kernels import compile_log, hogwild_sgd, sparse_classification

ROWS, FEATURES, NONZEROS = 200_000, 2**18, 50
LR = 0.1
RUNS = {  # label: hogwild_sgd keywords
    "hogwild, 1 thread": dict(mode="hogwild", threads=1),
    "hogwild, 2 threads": dict(mode="hogwild", threads=2),
    "locked, 2 threads": dict(mode="locked", threads=2),
    "serial": dict(mode="serial"),
}
SKLEARN = "sklearn SGDClassifier"
RATIO_TARGET = 0.6  # hogwild at 2 threads: at most this share of sklearn's epoch
SPEEDUP_TARGET = 1.8  # hogwild, 2 threads against 1


def _sklearn_epoch(X, y, seed) -> tuple[float, float, float]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import SGDClassifier

    model = SGDClassifier(loss="log_loss", penalty=None, learning_rate="constant", eta0=LR,
                          fit_intercept=False, max_iter=1, tol=None, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # one epoch on purpose
        start = time.perf_counter()
        model.fit(X, y)
        seconds = time.perf_counter() - start
    return seconds, seconds, model.score(X, y)


def _hogwild_epoch(X, y, seed, keywords) -> tuple[float, float, float]:
    start = time.perf_counter()
    result = hogwild_sgd(X, y, epochs=1, lr=LR, seed=seed, backend="numba", **keywords)
    call = time.perf_counter() - start
    return result.history.seconds[0], call, result.history.accuracy[0]


def bench_hogwild(repeats: int = 3) -> str:
    """The table: median seconds per epoch (± half the min-max spread) of each run, its ratio
    to sklearn, accuracy after one epoch, the 2-vs-1-thread speedup, and PASS/MISS per target."""
    X, y = sparse_classification(ROWS, FEATURES, NONZEROS, seed=0, dtype=np.float64)
    for keywords in RUNS.values():  # JIT (or numba's disk cache) before any clock
        hogwild_sgd(X[:1000], y[:1000], epochs=1, backend="numba", **keywords)
    samples = {label: [] for label in [*RUNS, SKLEARN]}
    for seed in range(repeats):
        for label, keywords in RUNS.items():
            samples[label].append(_hogwild_epoch(X, y, seed, keywords))
        samples[SKLEARN].append(_sklearn_epoch(X, y, seed))
    median = {label: statistics.median(s[0] for s in runs) for label, runs in samples.items()}
    lines = [f"Hogwild SGD, one epoch: {ROWS:,} x 2^{FEATURES.bit_length() - 1} CSR float64, "
             f"~{NONZEROS} nonzeros/row ({X.nnz:,}), log loss, lr {LR}; median of {repeats}, "
             f"load {os.getloadavg()[0]:.2f}",
             f"{'run':<24}{'epoch s':>9}{'spread':>9}{'call s':>9}{'/ sklearn':>11}{'accuracy':>10}"]
    for label, runs in samples.items():
        epoch = [s[0] for s in runs]
        spread = (max(epoch) - min(epoch)) / 2 / median[label]
        lines.append(f"{label:<24}{median[label]:>9.4f}{f'±{100 * spread:.0f}%':>9}"
                     f"{statistics.median(s[1] for s in runs):>9.4f}{median[label] / median[SKLEARN]:>10.2f}x"
                     f"{statistics.median(s[2] for s in runs):>10.5f}")
    ratio = median["hogwild, 2 threads"] / median[SKLEARN]
    speedup = median["hogwild, 1 thread"] / median["hogwild, 2 threads"]
    lines += [f"speedup, hogwild 2 threads vs 1: {speedup:.2f}x",
              f"{'PASS' if ratio <= RATIO_TARGET else 'MISS'}: hogwild at 2 threads takes {ratio:.2f}x "
              f"sklearn's epoch (target <= {RATIO_TARGET}x)",
              f"{'PASS' if speedup >= SPEEDUP_TARGET else 'MISS'}: hogwild speedup 2 vs 1 thread "
              f"{speedup:.2f}x (target >= {SPEEDUP_TARGET}x)"]
    log = compile_log()
    log = log[log.kernel.isin(["_sgd_shard", "_sgd_epoch", "_margins"])]
    lines.append("compile (or load from numba's cache; the first parallel kernel also starts numba's "
                 "thread pool), not in the times above:")
    lines += [f"  {row.kernel:<12}{row.seconds:>8.3f} s" for row in log.itertuples()]
    return "\n".join(lines)


if __name__ == "__main__":
    print(describe_machine(), end="\n\n")
    print(bench_hogwild())
