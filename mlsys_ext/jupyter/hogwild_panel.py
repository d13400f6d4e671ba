"""The Hogwild panel: lock-free, locked and serial SGD on one generated sparse problem,
loss against wall time, and the speedup of lock-free SGD against its thread count."""
from __future__ import annotations

from dataclasses import dataclass

import ipywidgets as widgets
import numba
import numpy as np
import scipy.sparse as sp

from ..kernels import SGDResult, hogwild_sgd, sparse_classification
from ._lab_panel import LabPanel, check_ranges, noise_note, slider, toggles
from ._plots import panel_axes, png_of

MODES = ("hogwild", "locked", "serial")
LOSSES = ("log", "hinge")
RANGES = {"rows": (1_000, 400_000), "features_log2": (8, 22), "nnz_per_row": (1, 200), "epochs": (1, 30),
          "lr": (1e-3, 10.0)}  # what the sliders show, and what %hogwild accepts
COLORS = {"hogwild": "#1f77b4", "locked": "#d62728", "serial": "#2ca02c"}
SEED = 0


@dataclass
class HogwildMeasurement:
    runs: dict[str, SGDResult]  # mode: result
    threads: np.ndarray  # 1 .. numba's thread pool
    speedup: np.ndarray  # serial SGD's median epoch / hogwild's at each thread count (at 1: serial's own)
    shape: tuple[int, int]
    nnz: int


def measure_hogwild(X, y, threads: int, epochs: int, lr: float, loss: str,
                    checkpoint=lambda: None) -> HogwildMeasurement:
    """The three modes at ``threads`` on the problem ``X``, ``y``, then hogwild at every other
    thread count of numba's pool from 2 up, for the speedup over serial SGD. ``checkpoint`` is
    called between the runs (a panel's, to give up a stale run)."""
    runs = {}
    for mode in MODES:
        checkpoint()
        runs[mode] = hogwild_sgd(X, y, loss=loss, epochs=epochs, lr=lr, threads=threads, mode=mode, seed=SEED,
                                 backend="numba")
    counts = np.arange(1, numba.config.NUMBA_NUM_THREADS + 1)
    series = []
    for count in counts:
        checkpoint()
        series.append(runs["serial"] if count == 1 else runs["hogwild"] if count == threads else
                      hogwild_sgd(X, y, loss=loss, epochs=epochs, lr=lr, threads=int(count), seed=SEED,
                                  backend="numba"))
    medians = np.array([run.history.seconds.median() for run in series])
    return HogwildMeasurement(runs, counts, medians[0] / medians, X.shape, X.nnz)


def contradictions(m: HogwildMeasurement) -> list[str]:
    """Speedups the theory rules out: t threads share one memory bus and cannot do an epoch
    more than t times faster than one (more than 5% over, since medians of a few epochs jitter)."""
    return [f"{speedup:.2f}x on {count} threads" for count, speedup in zip(m.threads, m.speedup)
            if speedup > 1.05 * count]


def draw_hogwild(m: HogwildMeasurement, figure=None) -> tuple[bytes, str, object]:
    """PNG, summary and the figure, which the next drawing can reuse (see ``panel_axes``)."""
    fig, (by_time, by_threads) = panel_axes(figure, 2, 8.0, 2.6, left=0.08, right=0.98, bottom=0.2, top=0.95,
                                            wspace=0.3)
    start_loss = 1.0 if m.runs["serial"].loss == "hinge" else np.log(2.0)  # the loss at w = 0
    for mode, run in m.runs.items():
        by_time.plot([0.0, *(1000 * run.history.seconds.cumsum())], [start_loss, *run.history.loss], "o-", ms=3,
                     color=COLORS[mode], label=f"{mode} ({run.threads} thread{'s' if run.threads > 1 else ''})")
    by_time.set_xlabel("update time (ms)")
    by_time.set_ylabel(f"training {m.runs['serial'].loss} loss")
    by_time.legend(fontsize=7, frameon=False)
    by_threads.plot(m.threads, m.threads, "--", color="gray", label="ideal")
    by_threads.plot(m.threads, m.speedup, "o-", color=COLORS["hogwild"], label="hogwild, measured")
    superlinear = m.speedup > 1.05 * m.threads  # noise: hollow, so no one reads it as a result
    by_threads.plot(m.threads[superlinear], m.speedup[superlinear], "o", ms=8, mfc="white", color=COLORS["hogwild"])
    by_threads.set_xticks(m.threads)
    by_threads.set_xlabel("threads")
    by_threads.set_ylabel("epoch speedup over serial")
    by_threads.legend(fontsize=7, frameon=False, loc="upper left")
    rows = "".join(
        f"<tr><td>{mode}</td><td>{run.threads}</td><td>{1000 * run.history.seconds.median():.2f}</td>"
        f"<td>{run.history.accuracy.iloc[-1]:.4f}</td><td>{run.history.loss.iloc[-1]:.4f}</td></tr>"
        for mode, run in m.runs.items())
    compile_seconds = sum(run.compile_seconds for run in m.runs.values())
    summary = (
        f"<p>{m.shape[0]:,} rows x {m.shape[1]:,} features, {m.nnz:,} nonzeros; "
        f"{m.runs['serial'].epochs} epochs, lr {m.runs['serial'].lr:g}</p>"
        "<table><tr><th>mode</th><th>threads</th><th>ms/epoch (median)</th><th>accuracy</th><th>loss</th></tr>"
        f"{rows}</table><p>hogwild speedup over serial at {m.threads[-1]} threads: {m.speedup[-1]:.2f}x; "
        f"compile time in this measurement: {compile_seconds:.2f} s</p>" + noise_note(contradictions(m)))
    return png_of(fig), summary, fig


class HogwildPanel(LabPanel):
    """Sliders for the problem (rows, log2 features, nonzeros per row) and the run (threads,
    epochs, learning rate, loss). Lock-free workers keep up with serial SGD's loss per epoch
    while dividing its time; one lock around each update costs more than the threads give."""

    # The defaults: a problem too big to separate (accuracy ~0.95), with epochs long enough
    # (~2 ms) for threads to show, measured within a slider move's budget (~50 ms). Its
    # 256 KB of weights fit in a core's L2: at 2^14 features two threads write the same
    # lines so often that hogwild ran at half serial's speed, and past L2 every update misses.
    def __init__(self, rows: int = 20_000, features_log2: int = 15, nnz_per_row: int = 16,
                 threads: int | None = None, epochs: int = 4, lr: float = 0.1, loss: str = "log"):
        pool = numba.config.NUMBA_NUM_THREADS
        threads = pool if threads is None else threads
        sized = {"rows": rows, "features_log2": features_log2, "nnz_per_row": nnz_per_row, "epochs": epochs}
        check_ranges({**RANGES, "threads": (1, pool)}, **sized, lr=lr, threads=threads)
        # the core refuses the rest (the loss), with its message
        hogwild_sgd(sp.eye(2, format="csr"), [0, 1], loss=loss, epochs=epochs, lr=lr, threads=threads,
                    mode="serial", backend="numpy")
        controls = {name: slider(widgets.IntSlider, name.replace("_", " "), RANGES[name], value=value,
                                 step=1_000 if name == "rows" else 1)
                    for name, value in sized.items()}
        controls["threads"] = slider(widgets.IntSlider, "threads", value=threads, min=1, max=pool)
        controls["lr"] = slider(widgets.FloatLogSlider, "lr", RANGES["lr"], value=lr, step=0.1, readout_format=".3g")
        controls["loss"] = toggles("loss", list(LOSSES), loss)
        self._problem, self._problem_shape = None, None
        super().__init__("Hogwild! SGD: lock-free, locked and serial", controls)

    def measure(self, rows, features_log2, nnz_per_row, threads, epochs, lr, loss):
        self.warm_up("sgd", lambda: measure_hogwild(*sparse_classification(64, 16, 4), threads, 1, lr, loss))
        shape = (rows, 2**features_log2, nnz_per_row)
        if self._problem_shape != shape:  # a new problem only when its sliders move (~10 ms at the defaults)
            self._problem, self._problem_shape = sparse_classification(*shape, seed=SEED), shape
        return measure_hogwild(*self._problem, threads, epochs, lr, loss, self.checkpoint)

    def draw(self, result):
        png, summary, self.figure = draw_hogwild(result, self.figure)
        return png, summary
