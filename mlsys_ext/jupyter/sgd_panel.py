"""``%allreduce --sgd``: data-parallel SGD on the cluster's actors, by all-reduce, by a
synchronous parameter server and by an asynchronous one with bounded staleness: training
loss by round and by wall time beside the single-process run, and the payload of a round
beside its formula."""
from __future__ import annotations

from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np

from ..cluster import Cluster
from ..distributed import DataParallelResult, data_parallel_sgd, sequential_sgd
from ._lab_panel import LabPanel, check_ranges, noise_note, slider, toggles
from ._plots import panel_axes, png_of

RANGES = {"workers": (1, 8), "staleness": (0, 8), "jitter_ms": (0.0, 10.0)}
COMPRESSIONS = {"none": None, "fp16": "fp16", "top-k": "topk"}
TOPK = 0.1  # top-k keeps this share of the coordinates (with error feedback)
ROWS, FEATURES, BATCH, LR, SEED = 1_200, 32, 20, 0.5, 0  # the problem: logistic regression, one epoch
MODES = ("allreduce", "ps", "async")
KEPT_RUNS = 64  # runs a panel keeps for the moves back to settings it has seen
COLORS = {"allreduce": "#1f77b4", "ps": "#d62728", "async": "#ff7f0e"}


def problem() -> tuple[np.ndarray, np.ndarray]:
    """Separable-with-noise logistic regression: the same rows at every move."""
    rng = np.random.default_rng(SEED)
    X = rng.standard_normal((ROWS, FEATURES))
    margins = X @ rng.standard_normal(FEATURES) + 0.5 * rng.standard_normal(ROWS)
    return X, (margins > 0).astype(float)


def label(mode: str, staleness: int, compression: str | None) -> str:
    name = {"allreduce": "ring all-reduce", "ps": "PS, synchronous", "async": f"PS, async s={staleness}"}[mode]
    if mode == "allreduce" or compression is None:
        return name
    return f"{name}, {'top-k ' + format(TOPK, '.0%') if compression == 'topk' else compression}"


@dataclass
class SGDMeasurement:
    workers: int
    staleness: int
    compression: str | None
    jitter: float  # seconds, the mean wait of a worker before each round's gradient
    runs: dict[str, DataParallelResult]  # by mode
    sequential: list[float]  # the single-process run's loss after each round


def measure_sgd(cluster: Cluster, workers: int, staleness: int, compression: str | None, jitter: float,
                checkpoint=lambda: None, done: dict | None = None) -> SGDMeasurement:
    """Train by every mode; ``done`` keeps runs by their settings, so that a move runs only
    the modes it changes (all-reduce ignores compression; only async has a staleness)."""
    X, y = problem()
    done = {} if done is None else done
    runs = {}
    for mode in MODES:
        checkpoint()
        settings = (mode, workers, staleness if mode == "async" else 0,
                    None if mode == "allreduce" else compression, jitter)
        if settings not in done:
            done[settings] = data_parallel_sgd(
                cluster, X, y, workers, sync=mode, staleness=settings[2], compression=settings[3], lr=LR,
                batch_size=BATCH, topk=TOPK, jitter=jitter, seed=SEED)
        runs[mode] = done[settings]
    while len(done) > KEPT_RUNS:
        done.pop(next(iter(done)))  # the oldest
    _, sequential = sequential_sgd(X, y, workers, lr=LR, batch_size=BATCH, seed=SEED)
    return SGDMeasurement(workers, staleness, compression, jitter, runs, sequential)


def contradictions(m: SGDMeasurement) -> list[str]:
    """What the theory rules out: a synchronous run (uncompressed) off the single-process one,
    a pull staler than the bound, payload bytes off the formula. All are counted, not
    timed, so any of them would be a bug."""
    found = []
    exact = ["allreduce"] + (["ps"] if m.compression is None else [])
    for mode in exact:
        if not np.allclose(m.runs[mode].history.loss, m.sequential, rtol=1e-9):
            found.append(f"{label(mode, m.staleness, m.compression)} differs from the single-process run")
    for mode, run in m.runs.items():
        if run.staleness_violations:
            found.append(f"{run.staleness_violations} pulls of {mode} staler than the bound")
        if run.bytes_per_round != run.formula_bytes_per_round:
            found.append(f"{mode} moved {run.bytes_per_round:,.0f} B a round, the formula "
                         f"{run.formula_bytes_per_round:,.0f}")
    return found


def draw_sgd(m: SGDMeasurement, figure=None) -> tuple[bytes, str, object]:
    """PNG, summary and the figure, which the next drawing can reuse (see ``panel_axes``)."""
    fig, (by_round, by_time, sent) = panel_axes(figure, 3, 10.0, 3.0, left=0.06, right=0.99, bottom=0.17,
                                                top=0.86, wspace=0.4)
    rounds = np.arange(1, len(m.sequential) + 1)
    # on top: the synchronous runs lie under it
    by_round.plot(rounds, m.sequential, "--", color="black", lw=1.0, zorder=5, label="single process")
    for mode, run in m.runs.items():
        name = label(mode, m.staleness, m.compression)
        by_round.plot(run.history["round"], run.history.loss, "-", lw=1.2, color=COLORS[mode], label=name)
        by_time.plot(1e3 * run.history.seconds, run.history.loss, "-", lw=1.2, color=COLORS[mode], label=name)
    by_round.set_xlabel("round (one batch per worker)")
    by_round.set_ylabel("training loss (log loss)")
    by_round.set_title(f"{m.workers} workers, batch {BATCH} each", fontsize=8)
    by_round.legend(fontsize=6, frameon=False, loc="upper right")
    by_time.set_xlabel("wall time (ms)")
    by_time.set_ylabel("training loss (log loss)")
    by_time.set_title(f"workers wait {1e3 * m.jitter:.1f} ms a round on average", fontsize=8)
    by_time.set_xlim(left=0)
    x = np.arange(len(m.runs))
    measured = [run.bytes_per_round / 1024 for run in m.runs.values()]
    theory = [run.formula_bytes_per_round / 1024 for run in m.runs.values()]
    sent.bar(x, measured, 0.6, color=[COLORS[mode] for mode in m.runs], label="measured")
    sent.hlines(theory, x - 0.4, x + 0.4, colors="black", lw=2, label="formula")
    sent.set_xticks(x, ["all-reduce", "PS sync", "PS async"])
    sent.tick_params(axis="x", labelsize=7)
    sent.set_ylabel("payload KiB per round, all workers")
    sent.set_title("ring 2(n-1)8d; PS n(push + 8d)", fontsize=8)
    sent.set_ylim(0, 1.3 * max(max(measured), max(theory), 1e-9))
    sent.legend(fontsize=6, frameon=False, loc="upper left")
    rows = ""
    for mode, run in m.runs.items():
        ahead = 0 if run.pulls is None else int((run.pulls["round"] - run.pulls.slowest).max())
        rows += (f"<tr><td>{label(mode, m.staleness, m.compression)}</td><td>{len(run.history)}</td>"
                 f"<td>{1e3 * run.history.seconds.iloc[-1]:,.0f}</td><td>{run.history.loss.iloc[-1]:.4f}</td>"
                 f"<td>{run.bytes_per_round:,.0f}</td><td>{run.formula_bytes_per_round:,.0f}</td>"
                 f"<td>{ahead}</td><td>{run.staleness_violations}</td></tr>")
    summary = ("<table style='border-spacing: 10px 0'><tr><th>mode</th><th>rounds</th><th>wall ms</th>"
               "<th>final loss</th><th>bytes/round</th><th>formula</th><th>most rounds ahead</th>"
               "<th>violations</th></tr>"
               f"{rows}</table><p>Logistic regression, {ROWS:,} rows x {FEATURES} features, one epoch; "
               f"single process: {m.sequential[-1]:.4f}. The synchronous modes compute the same batches at "
               "the same weights as one process does (compression aside); the asynchronous one applies each "
               "gradient as it comes and answers a pull only while its worker is at most s rounds ahead of "
               "the slowest (stale-synchronous parallel). With uneven workers (the wait), the synchronous "
               "modes wait for the slowest every round.</p>" + noise_note(contradictions(m)))
    return png_of(fig), summary, fig


class SGDPanel(LabPanel):
    """Sliders for the workers, the staleness bound and the workers' unevenness, buttons for
    the compression; each move trains by all three modes on the cluster's actors."""

    def __init__(self, cluster: Cluster, workers: int | None = None, staleness: int = 2,
                 compression: str = "none", jitter_ms: float = 0.5):
        if cluster.stopped:
            raise ValueError("the cluster is stopped: start one with cluster = %cluster start 2")
        workers = min(cluster.n, RANGES["workers"][1]) if workers is None else workers
        check_ranges(RANGES, workers=workers, staleness=staleness, jitter_ms=jitter_ms)
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {', '.join(COMPRESSIONS)}, got {compression!r}")
        self.cluster = cluster
        self._runs: dict = {}  # by settings: a move reruns only the modes it changes
        controls = {
            "workers": slider(widgets.IntSlider, "workers", RANGES["workers"], value=workers),
            "staleness": slider(widgets.IntSlider, "async staleness s", RANGES["staleness"], value=staleness),
            "jitter_ms": slider(widgets.FloatSlider, "mean wait ms", RANGES["jitter_ms"], step=0.5,
                                value=jitter_ms),
            "compression": toggles("PS compression", list(COMPRESSIONS), compression),
        }
        super().__init__("Data-parallel SGD: all-reduce, synchronous and asynchronous parameter server", controls)

    def measure(self, workers, staleness, jitter_ms, compression):
        return measure_sgd(self.cluster, workers, staleness, COMPRESSIONS[compression], jitter_ms / 1e3,
                           self.checkpoint, self._runs)

    def draw(self, result):
        png, summary, self.figure = draw_sgd(result, self.figure)
        return png, summary
