"""The ``%allreduce`` panel: ring, binomial-tree and parameter-server all-reduce on the
cluster's actors, time and bus bandwidth against the vector's size, and the payload bytes
each rank sent beside the formula."""
from __future__ import annotations

import time
from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np
import pandas as pd

from ..cluster import Cluster
from ..distributed import ALGORITHMS, Collective, ring_bytes_per_rank
from ._lab_panel import LabPanel, check_ranges, noise_note, slider
from ._plots import panel_axes, plain_log_scale, png_of

RANGES = {"ranks": (1, 8), "size_log2": (8, 24), "servers": (1, 8)}  # what the sliders show, and %allreduce accepts
SWEEP_STEPS = (8, 4, 0)  # the sizes measured: 2^(size_log2 - step) floats
REPEATS, BUDGET = 2, 0.01  # calls per figure at most, and the seconds they may take (at least one call)
COLORS = {"ring": "#1f77b4", "tree": "#2ca02c", "ps": "#d62728"}
LABELS = {"ring": "ring", "tree": "binomial tree", "ps": "parameter server"}
SHORT = {"ring": "ring", "tree": "tree", "ps": "PS"}


def formula_bytes(algorithm: str, size_bytes: int, ranks: int, servers: int) -> np.ndarray:
    """Payload bytes each rank sends in one all-reduce of ``size_bytes``, by the textbook:
    ring 2(n-1)S/n; binomial tree S up (not the root) and S to each child; parameter
    server S up, split over the servers. Exact when the ranks divide the size."""
    if ranks == 1:
        return np.zeros(1)
    if algorithm == "ring":
        return np.full(ranks, ring_bytes_per_rank(size_bytes, ranks))
    if algorithm == "tree":
        sent = []
        for r in range(ranks):
            span = (r & -r) if r else 1 << (ranks - 1).bit_length()
            children = sum(1 for i in range(span.bit_length() - 1) if r + (1 << i) < ranks)
            sent.append(size_bytes * (children + (r > 0)))
        return np.array(sent, dtype=float)
    return np.full(ranks, float(size_bytes))


@dataclass
class AllReduceMeasurement:
    ranks: int
    servers: int
    stats: pd.DataFrame  # Collective.stats rows of this measurement: every algorithm at every size
    size_bytes: int  # the largest size, where the bytes are compared with the formula


def measure_allreduce(collective: Collective, size_log2: int, checkpoint=lambda: None) -> AllReduceMeasurement:
    """Every algorithm at each size of the sweep (float32 vectors of integer values, so every
    sum is exact; the sums checked); each figure the fastest of up to REPEATS calls within
    BUDGET seconds (small vectors are latency, and noisy). Warm the collective up first
    (``warm_up``): its first calls open the ranks' sockets to each other."""
    ranks = collective.ranks
    counts = [1 << max(0, size_log2 - step) for step in SWEEP_STEPS]
    first, figures, row = len(collective.stats), [], 0  # figures: each one's calls, (first row, rows) after ``first``
    for count in counts:
        arrays = [np.full(count, r + 1, np.float32) for r in range(ranks)]
        for algorithm in ALGORITHMS:
            checkpoint()
            calls, spent = 0, 0.0
            while calls == 0 or (calls < REPEATS and spent < BUDGET):
                start = time.perf_counter()
                out = collective.allreduce(arrays, algorithm)
                spent += time.perf_counter() - start
                calls += 1
                if not all(np.all(o == ranks * (ranks + 1) / 2) for o in out):
                    raise RuntimeError(f"{algorithm} all-reduce gave a wrong sum")  # never expected: say so loudly
            figures.append((row, calls))
            row += calls
    # the stats frame is built once: it is made afresh from every call's row at each reading
    stats = collective.stats.iloc[first:].reset_index(drop=True)
    best = [stats.seconds.iloc[start:start + calls].idxmin() for start, calls in figures]
    return AllReduceMeasurement(ranks, collective.n_servers, stats.loc[best].reset_index(drop=True), 4 * counts[-1])


def warm_up(collective: Collective) -> None:
    """One call of each algorithm, so that the ranks' sockets to each other exist before any timing."""
    for algorithm in ALGORITHMS:
        collective.allreduce([np.ones(collective.ranks, np.float32)] * collective.ranks, algorithm)


def contradictions(m: AllReduceMeasurement) -> list[str]:
    """What the theory rules out: payload bytes off the formula (they are counted, not timed,
    so this would be a bug), and a call that got faster on a bigger vector (noise)."""
    found = []
    last = m.stats[m.stats.size_bytes == m.size_bytes]
    for row in last.itertuples():
        want = formula_bytes(row.algorithm, row.size_bytes, m.ranks, m.servers)
        if not np.allclose(row.sent_bytes_per_rank, want):
            found.append(f"{row.algorithm} sent {sum(row.sent_bytes_per_rank):,} bytes, the formula "
                         f"{want.sum():,.0f}")
    for algorithm, rows in m.stats.groupby("algorithm", sort=False):
        found += [f"{algorithm} faster at {rows.size_bytes.iloc[i + 1]:,} B than at {rows.size_bytes.iloc[i]:,} B"
                  for i in np.flatnonzero(_faster_on_more(rows.seconds.to_numpy()))]
    return found


def _faster_on_more(seconds: np.ndarray) -> np.ndarray:
    """Whether each call took under 0.8x the one before it on a smaller vector (more bytes
    never take less time; small ones jitter by about that much)."""
    return seconds[1:] < 0.8 * seconds[:-1]


def draw_allreduce(m: AllReduceMeasurement, figure=None) -> tuple[bytes, str, object]:
    """PNG, summary and the figure, which the next drawing can reuse (see ``panel_axes``)."""
    from matplotlib.ticker import LogLocator

    fig, (by_size, bandwidth, sent) = panel_axes(figure, 3, 10.0, 3.0, left=0.06, right=0.99, bottom=0.17,
                                                 top=0.86, wspace=0.4)
    for algorithm, rows in m.stats.groupby("algorithm", sort=False):
        kib, seconds = (rows.size_bytes / 1024).to_numpy(), rows.seconds.to_numpy()
        by_size.plot(kib, 1e3 * seconds, "o-", ms=3, color=COLORS[algorithm], label=LABELS[algorithm])
        bandwidth.plot(kib, rows.busbw / 1e9, "o-", ms=3, color=COLORS[algorithm], label=LABELS[algorithm])
        noisy = np.flatnonzero(_faster_on_more(seconds)) + 1  # noise: hollow, so no one reads it as a result
        by_size.plot(kib[noisy], 1e3 * seconds[noisy], "o", ms=7, mfc="white", color=COLORS[algorithm])
    for ax in (by_size, bandwidth):
        plain_log_scale(ax, "x")
        ax.set_xlabel("vector size (KiB of float32)")
    plain_log_scale(by_size, "y")
    by_size.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # a decade or two: 1-2-5 ticks
    by_size.set_ylabel("time per all-reduce (ms)")
    by_size.set_title(f"{m.ranks} ranks, first start to last end", fontsize=8)
    by_size.legend(fontsize=6, frameon=False, loc="best")
    bandwidth.set_ylabel("busbw (GB/s)")
    bandwidth.set_title("algbw x 2(n-1)/n, as nccl-tests", fontsize=8)
    bandwidth.set_ylim(bottom=0)
    last = m.stats[m.stats.size_bytes == m.size_bytes]
    x = np.arange(len(last))
    measured = [max(row.sent_bytes_per_rank) / 1024 for row in last.itertuples()]
    theory = [formula_bytes(row.algorithm, row.size_bytes, m.ranks, m.servers).max() / 1024
              for row in last.itertuples()]
    sent.bar(x, measured, 0.6, color=[COLORS[a] for a in last.algorithm], label="measured")
    sent.hlines(theory, x - 0.4, x + 0.4, colors="black", lw=2, label="formula")
    sent.set_xticks(x, [SHORT[a] for a in last.algorithm])
    sent.tick_params(axis="x", labelsize=7)
    sent.set_ylabel("payload KiB, busiest rank")
    sent.set_title(f"at {m.size_bytes / 1024:,.0f} KiB: ring 2(n-1)S/n, tree, PS S", fontsize=8)
    sent.set_ylim(0, 1.25 * max(max(measured), max(theory), 1e-9))
    sent.legend(fontsize=6, frameon=False, loc="upper left")
    rows = "".join(
        f"<tr><td>{LABELS[r.algorithm]}</td><td>{r.size_bytes:,}</td><td>{r.count:,}</td><td>{r.type}</td>"
        f"<td>{1e6 * r.seconds:,.0f}</td><td>{r.algbw / 1e9:.3f}</td><td>{r.busbw / 1e9:.3f}</td>"
        f"<td>{r.messages}</td><td>{1e3 * r.call_seconds:.1f}</td></tr>" for r in m.stats.itertuples())
    summary = ("<table style='border-spacing: 10px 0'><tr><th>algorithm</th><th>size (B)</th><th>count</th><th>type</th><th>time (us)</th>"
               "<th>algbw (GB/s)</th><th>busbw (GB/s)</th><th>messages</th><th>whole call (ms)</th></tr>"
               f"{rows}</table><p>{m.ranks} ranks (one actor each, rank r on worker r mod n), "
               f"{m.servers} parameter server{'s' if m.servers > 1 else ''}; time from the first rank's start "
               "to the last rank's end; the whole call also loads the inputs and returns the sums.</p>"
               + noise_note(contradictions(m)))
    return png_of(fig), summary, fig


class AllReducePanel(LabPanel):
    """Sliders for the ranks, the vector's size and the parameter servers; every algorithm
    all-reduces a sweep of sizes on the cluster's actors, drawn beside the formulas."""

    def __init__(self, cluster: Cluster, ranks: int | None = None, size_log2: int = 18, servers: int = 1):
        if cluster.stopped:
            raise ValueError("the cluster is stopped: start one with cluster = %cluster start 2")
        ranks = min(cluster.n, RANGES["ranks"][1]) if ranks is None else ranks
        check_ranges(RANGES, ranks=ranks, size_log2=size_log2, servers=servers)
        self.cluster = cluster
        self._collectives: dict[tuple[int, int], Collective] = {}  # the actors, kept for the next moves
        controls = {
            "ranks": slider(widgets.IntSlider, "ranks", RANGES["ranks"], value=ranks),
            "size_log2": slider(widgets.IntSlider, "floats log2", RANGES["size_log2"], value=size_log2),
            "servers": slider(widgets.IntSlider, "PS shards", RANGES["servers"], value=servers),
        }
        super().__init__("All-reduce: ring, binomial tree and parameter server on the cluster", controls)

    def measure(self, ranks, size_log2, servers):
        if (ranks, servers) not in self._collectives:
            self.status.value = "measuring ... (starting the rank actors: first use of these ranks)"
            self._collectives[ranks, servers] = Collective(self.cluster, ranks, servers)
        self.warm_up((ranks, servers), lambda: warm_up(self._collectives[ranks, servers]))
        return measure_allreduce(self._collectives[ranks, servers], size_log2, self.checkpoint)

    def draw(self, result):
        png, summary, self.figure = draw_allreduce(result, self.figure)
        return png, summary
