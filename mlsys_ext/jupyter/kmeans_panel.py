"""The ``%kmeans`` panel: centroids moving over the points, the inertia curve, and time
per Lloyd iteration for each backend and scikit-learn, against the matmul peak."""
from __future__ import annotations

import os
from dataclasses import dataclass

import ipywidgets as widgets
import numba
import numpy as np

from ..kernels import available_backends, kmeans, kmeans_plusplus, matmul_peak_gflops
from ._lab_panel import LabPanel, best_seconds, check_ranges, dropdown, noise_note, slider, toggles
from ._plots import panel_axes, png_of

RANGES = {"n": (1_000, 200_000), "dims": (1, 64), "k": (1, 64)}  # what the sliders show, and what %kmeans accepts

MAX_TRACE_ITERATIONS = 30  # the centroid paths drawn: enough to see them settle
TIMED_ITERATIONS = 3  # per implementation not traced, from the same start: its best one is its figure
SKLEARN_ITERATIONS = 5  # scikit-learn's figure is a difference of two fits' times: more iterations, less noise
MIN_SKLEARN_ITERATIONS = 3  # with 2, one iteration's ~0.5 ms drowned in its fits' jitter: 30 ms/iteration was drawn
SCATTER_POINTS = 1_000
SPREAD = 3.0  # blob standard deviation against means in [-10, 10]: they overlap, so Lloyd takes many steps


def blobs(n: int, dims: int, centers: int, seed: int = 0) -> np.ndarray:
    """``n`` float32 points around ``centers`` random means: overlapping clusters to find."""
    rng = np.random.default_rng(seed)
    means = rng.uniform(-10, 10, (centers, dims))
    return (means[rng.integers(centers, size=n)] + SPREAD * rng.standard_normal((n, dims))).astype(np.float32)


@dataclass
class KMeansMeasurement:
    X: np.ndarray
    paths: np.ndarray  # (iterations + 1, k, D): the chosen backend's centroids after each iteration
    labels: np.ndarray
    inertia: np.ndarray  # per iteration
    seconds_per_iteration: dict  # implementation -> seconds of its fastest Lloyd iteration (see _sklearn_seconds)
    gflops_per_iteration: float
    peak_gflops: float
    compile_seconds: float
    backend: str
    init: str
    untimed: str = ""  # why scikit-learn has no figure, when it has none


def measure_kmeans(n: int, dims: int, k: int, backend: str, threads: int, init: str = "k-means++",
                   seed: int = 0, checkpoint=lambda: None) -> KMeansMeasurement:
    """Trace the chosen backend's centroids from one start (k-means++ or random points) to
    convergence, its fastest traced iteration being its figure; then time
    a few iterations of every other usable backend (not the CUDA simulator) and of
    scikit-learn from that start. ``checkpoint`` is called between the steps (a panel's, to
    give up a stale run)."""
    X = blobs(n, dims, k, seed)
    rng = np.random.default_rng(seed)
    start = kmeans_plusplus(X, k, seed=rng) if init == "k-means++" else X[rng.choice(n, k, replace=False)]
    # tol=0: traced until no label changes, so the paths show the centroids settle
    traced = kmeans(X, k, init=start, max_iter=MAX_TRACE_ITERATIONS, tol=0, backend=backend, threads=threads,
                    trace=True)
    timed = {}
    for name, (usable, why) in available_backends().items():
        if name == backend:
            timed[name] = float(traced.history.seconds.min())
        elif usable and "simulator" not in why:
            checkpoint()
            run = kmeans(X, k, init=start, backend=name, threads=threads, max_iter=TIMED_ITERATIONS, tol=0)
            timed[name] = float(run.history.seconds.min())
    checkpoint()
    sklearn, untimed = _sklearn_seconds(X, start)
    if sklearn is not None:
        timed["scikit-learn"] = sklearn
    m = KMeansMeasurement(X, traced.path, traced.labels, traced.history.inertia.to_numpy(), timed,
                          2.0 * n * k * dims / 1e9, matmul_peak_gflops("float32"), traced.compile_seconds, backend,
                          init, untimed)
    if m.gflops_per_iteration / min(timed.values()) > m.peak_gflops:
        m.peak_gflops = matmul_peak_gflops("float32", again=True)  # the peak may have been measured on a busy machine
    return m


def _sklearn_seconds(X, init, max_iter: int = SKLEARN_ITERATIONS) -> tuple[float | None, str]:
    """scikit-learn's seconds per Lloyd iteration from the same start, its fixed costs
    taken out by also timing one iteration (each the best of up to two fits, within a
    budget), and "" ; or None and why there is no such figure."""
    try:
        from sklearn.cluster import KMeans
    except ImportError:
        return None, "scikit-learn is not installed"

    def fit(iterations, done=None):
        fitted = KMeans(len(init), init=init, n_init=1, max_iter=iterations, tol=0, algorithm="lloyd").fit(X)
        if done is not None:
            done.append(fitted.n_iter_)

    iterations = []
    one = best_seconds(lambda: fit(1), repeats=2, budget=0.02)
    full = best_seconds(lambda: fit(max_iter, iterations), repeats=2, budget=0.03)
    if iterations[0] < MIN_SKLEARN_ITERATIONS:
        return None, (f"scikit-learn converged after {iterations[0]} iteration{'s' * (iterations[0] > 1)}: too few "
                      "to time one apart from its fixed costs, which vary by more than an iteration takes")
    if full <= one:
        return None, (f"scikit-learn's fit of {iterations[0]} iterations took no longer than its fit of one: "
                      f"its fixed costs hide an iteration's (load average {os.getloadavg()[0]:.2f})")
    return (full - one) / (iterations[0] - 1), ""


def contradictions(m: KMeansMeasurement) -> list[str]:
    """Rates the theory rules out: an iteration's distance computation is a matmul's work,
    so no implementation can run it above the matmul peak."""
    return [f"{name} at {100 * m.gflops_per_iteration / seconds / m.peak_gflops:.0f}% of the matmul peak"
            for name, seconds in m.seconds_per_iteration.items() if m.gflops_per_iteration / seconds > m.peak_gflops]


def draw_kmeans(m: KMeansMeasurement, figure=None) -> tuple[bytes, str, object]:
    """PNG, summary and the figure, which the next drawing can reuse (see ``panel_axes``)."""
    from matplotlib.ticker import MaxNLocator

    fig, (scatter, curve, bars) = panel_axes(figure, 3, 10.0, 3.0, left=0.05, right=0.99, bottom=0.17, top=0.9,
                                             wspace=0.45)
    shown = slice(0, min(SCATTER_POINTS, len(m.X)))
    second = 1 if m.X.shape[1] > 1 else 0
    scatter.plot(m.X[shown, 0], m.X[shown, second], ".", ms=2, color="#9ecae1")  # one artist: cheap to draw
    # all paths in one artist, separated by NaN breaks
    breaks = np.full((1, m.paths.shape[1]), np.nan)
    scatter.plot(np.vstack([m.paths[:, :, 0], breaks]).T.ravel(), np.vstack([m.paths[:, :, second], breaks]).T.ravel(),
                 "-", color="black", lw=0.8)
    scatter.plot(m.paths[0, :, 0], m.paths[0, :, second], "o", mfc="white", mec="black", ms=4, label=f"{m.init} start")
    scatter.plot(m.paths[-1, :, 0], m.paths[-1, :, second], "X", color="#d62728", ms=7, label="final")
    scatter.set_title(f"centroids over {len(m.paths) - 1} iterations (dims 0, {second})", fontsize=8)
    scatter.legend(fontsize=6, frameon=False, loc="best")
    curve.plot(np.arange(1, len(m.inertia) + 1), m.inertia, "o-", ms=3)
    curve.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))  # no iteration 1.5
    curve.set_xlabel("iteration")
    curve.set_ylabel("inertia")
    curve.set_title("inertia at each iteration", fontsize=8)
    names = list(m.seconds_per_iteration)
    millis = [1e3 * m.seconds_per_iteration[name] for name in names]
    above_peak = [m.gflops_per_iteration / m.seconds_per_iteration[name] > m.peak_gflops for name in names]
    colors = ["#bbbbbb" if noisy else "#d62728" if name == "scikit-learn" else "#1f77b4"
              for name, noisy in zip(names, above_peak)]
    bars.barh(names, millis, color=colors, hatch=["//" if noisy else "" for noisy in above_peak])
    bars.set_yticks(range(len(names)), names)  # panel_axes' tick locator would number the bars instead
    bars.tick_params(axis="y", labelsize=7)
    for y, (ms, noisy) in enumerate(zip(millis, above_peak)):
        rate = m.gflops_per_iteration / (ms / 1e3)
        label = " noisy: above the peak" if noisy else f" {rate:.1f} GFLOP/s ({100 * rate / m.peak_gflops:.0f}% peak)"
        bars.text(ms, y, label, va="center", fontsize=7)
    bars.set_xlim(0, 2.3 * max(millis))  # room for the longest label right of the longest bar
    bars.set_xlabel("ms per Lloyd iteration")
    bars.set_title(f"matmul peak here: {m.peak_gflops:.0f} GFLOP/s (float32)", fontsize=8)
    rows = "".join(f"<tr><td>{name}</td><td>&nbsp;{1e3 * s:.2f} ms/iteration</td>"
                   f"<td>&nbsp;{m.gflops_per_iteration / s:.1f} GFLOP/s</td></tr>"
                   for name, s in m.seconds_per_iteration.items())
    summary = (f"<table>{rows}</table>{len(m.X):,} points x {m.X.shape[1]} dims, k = {m.paths.shape[1]}, "
               f"traced on {m.backend}; final inertia {m.inertia[-1]:,.1f}; "
               f"JIT compile {m.compile_seconds:.2f} s (not in the times)"
               + (f"<p>no scikit-learn bar: {m.untimed}</p>" if m.untimed else "") + noise_note(contradictions(m)))
    return png_of(fig), summary, fig


class KMeansPanel(LabPanel):
    """Sliders for points, dimensions, k, threads and the backend; the traced run's
    centroids move over the points, and every backend's time per iteration is drawn
    beside scikit-learn's as a share of the machine's matmul peak."""

    def __init__(self, n: int = 10_000, dims: int = 8, k: int = 8, threads: int | None = None,
                 backend: str = "numba", init: str = "k-means++"):
        max_threads = numba.config.NUMBA_NUM_THREADS
        threads = max_threads if threads is None else threads
        check_ranges({**RANGES, "threads": (1, max_threads)}, n=n, dims=dims, k=k, threads=threads)
        usable = [name for name, (ok, why) in available_backends().items() if ok and "simulator" not in why]
        if backend not in usable:
            raise ValueError(f"backend must be one of {', '.join(usable)} here, got {backend!r}")
        if init not in ("k-means++", "random"):
            raise ValueError(f"init must be k-means++ or random, got {init!r}")
        controls = {
            "n": slider(widgets.IntSlider, "points", RANGES["n"], value=n, step=1_000),
            "dims": slider(widgets.IntSlider, "dims", RANGES["dims"], value=dims),
            "k": slider(widgets.IntSlider, "k", RANGES["k"], value=k),
            "threads": slider(widgets.IntSlider, "threads", value=threads, min=1, max=max_threads),
            "backend": dropdown("backend", usable, backend),
            "init": toggles("init", ["k-means++", "random"], init),
        }
        super().__init__("k-means: Lloyd iterations, fused assign and accumulate", controls)

    def measure(self, n, dims, k, threads, backend, init):
        tiny = blobs(2 * k, dims, k)
        self.warm_up(backend, lambda: kmeans(tiny, k, backend=backend, threads=threads, max_iter=1))
        return measure_kmeans(n, dims, k, backend, threads, init, checkpoint=self.checkpoint)

    def draw(self, result):
        png, summary, self.figure = draw_kmeans(result, self.figure)
        return png, summary
