"""The ``%mapreduce`` panel: a word-count job on the cluster drawn as a Gantt chart of its
task attempts per worker, failures, lost outputs and backup copies marked, with buttons to
kill or pause a worker while the job runs (it runs off the kernel's main thread)."""
from __future__ import annotations

import functools

import ipywidgets as widgets
import numpy as np

from ..cluster import Cluster
from ..distributed import MapReduceResult, mapreduce, paced_word_count_map, word_count, word_count_reduce
from ._lab_panel import LabPanel, button, check_ranges, checkbox, control_row, dropdown, slider
from ._plots import panel_axes, png_of

# what the sliders show, and what %mapreduce accepts
RANGES = {"maps": (1, 64), "n_reduce": (1, 16), "task_ms": (0, 1000), "task_timeout": (0.1, 10.0)}
VOCABULARY = "map reduce shard key worker task shuffle combine partition straggler backup lease".split()
WORDS_PER_INPUT = 300
COLORS = {"map": "#1f77b4", "reduce": "#ff7f0e"}
# how each outcome is drawn over its kind's colour: (hatch, alpha)
STYLES = {"done": ("", 1.0), "failed": ("xx", 0.9), "lost": ("//", 0.5), "backup": ("..", 0.5),
          "superseded": ("..", 0.3)}


def generated_texts(maps: int) -> list[str]:
    return [" ".join(np.random.default_rng(i).choice(VOCABULARY, WORDS_PER_INPUT)) for i in range(maps)]


def draw_gantt(res: MapReduceResult, workers: list[str], expected: dict | None = None,
               figure=None) -> tuple[bytes, str, object]:
    """PNG, summary and the figure (reused by the next drawing): one row per worker, a bar per
    attempt from its start to its end (to the job's end while it still ran), coloured by
    kind and marked by outcome."""
    fig, (ax,) = panel_axes(figure, 1, 9.0, 2.8, left=0.07, right=0.99, bottom=0.17, top=0.88)
    tasks = res.tasks
    finish = float(np.nanmax(tasks.end.to_numpy())) if len(tasks) else res.seconds
    row = {worker: i for i, worker in enumerate(workers)}
    for attempt in tasks.itertuples():
        end = attempt.end if np.isfinite(attempt.end) else finish
        hatch, alpha = STYLES[attempt.outcome]
        ax.barh(row.get(attempt.worker, len(workers)), 1000 * (end - attempt.start), left=1000 * attempt.start,
                height=0.7, color=COLORS[attempt.kind], alpha=alpha, hatch=hatch, edgecolor="black", linewidth=0.4)
    ax.set_yticks(range(len(workers)), workers)
    ax.set_ylim(-0.6, len(workers) - 0.4)
    ax.set_xlabel("time since the job started (ms)")
    ax.set_ylabel("worker")
    from matplotlib.patches import Patch  # legend entries only: a bar of size 0 would still draw a tick

    handles = [Patch(color=COLORS[kind], label=kind) for kind in COLORS]
    handles += [Patch(facecolor="white", edgecolor="black", hatch=STYLES[o][0], label=o)
                for o in ("failed", "lost", "backup")]
    ax.legend(handles=handles, fontsize=6, frameon=False, ncol=5, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    counts = tasks.outcome.value_counts()
    correct = "" if expected is None else (
        " &nbsp; output equals the sequential job" if res.output == expected else
        " &nbsp; <b style='color:#d62728'>output differs from the sequential job</b>")
    summary = (f"<p>{int((tasks.kind == 'map').sum())} map and {int((tasks.kind == 'reduce').sum())} reduce attempts "
               f"in {1000 * res.seconds:.0f} ms: "
               + ", ".join(f"{counts.get(o, 0)} {o}" for o in STYLES) + f"{correct}</p>")
    return png_of(fig), summary, fig


class MapReducePanel(LabPanel):
    """Sliders for the job (map tasks, reduce tasks, the least time a map task takes, the
    task timeout, backups on or off); each change runs the job again. Kill or pause a
    worker while it runs: its tasks run again elsewhere and the output stays the same."""

    def __init__(self, cluster: Cluster, maps: int = 8, n_reduce: int = 4, task_ms: int = 20,
                 task_timeout: float = 1.0, backup_tasks: bool = True):
        if cluster.stopped:
            raise ValueError("the cluster is stopped: start one with cluster = %cluster start 2")
        check_ranges(RANGES, maps=maps, n_reduce=n_reduce, task_ms=task_ms, task_timeout=task_timeout)
        self.cluster = cluster
        self.worker = dropdown("worker", list(cluster.workers), cluster.workers[0])
        self.actions = {action: button(action) for action in ("kill", "pause", "resume")}
        self.message = widgets.Label()
        for action, action_button in self.actions.items():
            action_button.on_click(lambda _b, a=action: self.act(a))
        controls = {
            "maps": slider(widgets.IntSlider, "map tasks", RANGES["maps"], value=maps),
            "n_reduce": slider(widgets.IntSlider, "reduce tasks", RANGES["n_reduce"], value=n_reduce),
            "task_ms": slider(widgets.IntSlider, "map task ms", RANGES["task_ms"], value=task_ms, step=10),
            "task_timeout": slider(widgets.FloatSlider, "task timeout s", RANGES["task_timeout"], value=task_timeout,
                                   step=0.1),
            "backup_tasks": checkbox("backup tasks", backup_tasks),
        }
        super().__init__("MapReduce: task attempts per worker, with failures and backups", controls)
        self.children = (*self.children[:2], control_row(self.worker, *self.actions.values(), self.message),
                         *self.children[2:])

    def act(self, action: str) -> None:
        """Kill, pause or resume the chosen worker now, even while a job runs."""
        worker = self.worker.value
        try:
            getattr(self.cluster, action)(worker)
            self.message.value = f"{action} {worker}: done"
        except Exception as exc:
            self.message.value = f"{action} {worker} failed: {exc}"

    def measure(self, maps, n_reduce, task_ms, task_timeout, backup_tasks):
        texts = generated_texts(maps)
        res = mapreduce(self.cluster, texts, functools.partial(paced_word_count_map, task_ms / 1000),
                        word_count_reduce, n_reduce=n_reduce, backup_tasks=backup_tasks, task_timeout=task_timeout,
                        progress=False)
        return res, word_count({f"input-{i}": text for i, text in enumerate(texts)})

    def draw(self, result):
        res, expected = result
        png, summary, self.figure = draw_gantt(res, list(self.cluster.workers), expected, self.figure)
        return png, summary
