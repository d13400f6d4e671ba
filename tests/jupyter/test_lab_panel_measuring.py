"""What the panels' figures stand on, headless: best-of timing, figures flagged as noise when
they contradict their theory, and stale runs given up for newer slider moves."""
import dataclasses
import re
import threading

import ipywidgets as widgets
import numpy as np
import pytest

from mlsys_ext.jupyter import attention_panel, bloom_panel, hogwild_panel, kmeans_panel, lsh_panel
from mlsys_ext.jupyter._lab_panel import LabPanel, best_seconds, noise_note, slider
from mlsys_ext.jupyter._plots import new_figure, png_of
from mlsys_ext.jupyter.magics import MlsysMagics, default_of
from mlsys_ext.kernels import sparse_classification
from mlsys_ext.sketches import BloomFilter


def test_best_seconds_takes_the_fastest_run_and_stops_at_the_repeats_or_the_budget(monkeypatch):
    clock = iter([0.0, 0.5, 1.0, 1.1, 2.0, 2.3, 9.0, 9.01])  # runs of 0.5, 0.1, 0.3 and 0.01 s
    monkeypatch.setattr("mlsys_ext.jupyter._lab_panel.time.perf_counter", lambda: next(clock))
    calls = []
    assert best_seconds(lambda: calls.append(1), repeats=3, budget=10.0) == pytest.approx(0.1)
    assert len(calls) == 3
    clock = iter([0.0, 0.5, 1.0, 1.1])
    monkeypatch.setattr("mlsys_ext.jupyter._lab_panel.time.perf_counter", lambda: next(clock))
    calls.clear()
    assert best_seconds(lambda: calls.append(1), repeats=3, budget=0.2) == pytest.approx(0.5)
    assert len(calls) == 1  # one run over the budget is all there is time for, but never none


def test_a_noise_note_names_each_contradiction_and_the_load_and_is_empty_without_any():
    assert noise_note([]) == ""
    note = noise_note(["3.40x on 2 threads", "146% of the matmul peak"])
    assert "noisy, not a result" in note and "3.40x on 2 threads; 146% of the matmul peak" in note
    assert re.search(r"load average \d+\.\d\d on \d+ CPUs", note)


def attention_measurement(**changes):
    lengths = np.array([128, 256, 512])
    base = attention_panel.AttentionMeasurement(
        seq_len=512, heads=4, head_dim=64, backend="numba", causal=False, threads=2,
        seconds={"numba": 2e-3, "naive numpy": 4e-3}, lengths=lengths,
        sweep_seconds={"numba": np.array([2e-4, 6e-4, 2e-3]), "naive numpy": np.array([4e-4, 1e-3, 4e-3])},
        peak_gflops=500.0)
    return dataclasses.replace(base, **changes)


def test_attention_flags_a_rate_above_the_matmul_peak_and_a_call_faster_at_a_longer_length():
    honest = attention_measurement()
    assert attention_panel.contradictions(honest) == []
    assert "noisy" not in attention_panel.draw_attention(honest)[1]
    noisy = attention_measurement(seconds={"numba": 2e-4, "naive numpy": 4e-3},  # 1,342 GFLOP/s > 500
                                  sweep_seconds={"numba": np.array([2e-4, 1e-4, 2e-4]),
                                                 "naive numpy": np.array([4e-4, 1e-3, 4e-3])})
    found = attention_panel.contradictions(noisy)
    assert found == ["numba at 268% of the matmul peak", "numba faster at L=256 than at L=128"]
    summary = attention_panel.draw_attention(noisy)[1]
    assert "noisy, not a result" in summary and "268% of the matmul peak" in summary


def test_kmeans_flags_an_iteration_above_the_matmul_peak():
    X = np.zeros((10_000, 8), dtype=np.float32)
    m = kmeans_panel.KMeansMeasurement(
        X=X, paths=np.zeros((2, 8, 8)), labels=np.zeros(10_000, dtype=np.int64), inertia=np.array([2.0, 1.0]),
        seconds_per_iteration={"numba": 1e-3, "scikit-learn": 1e-6}, gflops_per_iteration=2 * 10_000 * 8 * 8 / 1e9,
        peak_gflops=100.0, compile_seconds=0.0, backend="numba", init="k-means++")
    assert kmeans_panel.contradictions(m) == ["scikit-learn at 1280% of the matmul peak"]
    assert "noisy, not a result" in kmeans_panel.draw_kmeans(m)[1]


def test_hogwild_flags_a_speedup_above_the_thread_count_only():
    m = hogwild_panel.measure_hogwild(*sparse_classification(2_000, 2**10, 8), threads=1, epochs=2, lr=0.1, loss="log")
    m.threads, m.speedup = np.array([1, 2, 4]), np.array([1.0, 2.05, 3.0])
    assert hogwild_panel.contradictions(m) == []
    m.speedup = np.array([1.0, 3.4, 3.0])
    assert hogwild_panel.contradictions(m) == ["3.40x on 2 threads"]
    assert "3.40x on 2 threads" in hogwild_panel.draw_hogwild(m)[1]


def test_simhash_flags_a_query_rate_that_rises_with_more_probes():
    m = lsh_panel.SimHashMeasurement(index=None, probes=(0, 1, 2), recall=np.array([0.8, 0.9, 1.0]),
                                     qps=np.array([10_000.0, 9_500.0, 9_000.0]), candidate_bound=0.8)
    assert lsh_panel.simhash_contradictions(m) == []
    m.qps = np.array([5_000.0, 9_500.0, 9_000.0])
    assert lsh_panel.simhash_contradictions(m) == ["9,500 queries/s at 1 probes, above 5,000 at 0"]


def test_the_hogwild_default_problem_cannot_be_separated_so_the_modes_can_differ():
    defaults = {name: default_of(hogwild_panel.HogwildPanel, name)
                for name in ("rows", "features_log2", "nnz_per_row", "epochs", "lr", "loss")}
    problem = sparse_classification(defaults["rows"], 2 ** defaults["features_log2"], defaults["nnz_per_row"])
    m = hogwild_panel.measure_hogwild(*problem, threads=2, epochs=defaults["epochs"], lr=defaults["lr"], loss=defaults["loss"])
    accuracies = [run.history.accuracy.iloc[-1] for run in m.runs.values()]
    assert max(accuracies) < 0.97, accuracies  # the old default (2^18 features) reached 1.0000


def test_the_hogwild_magic_opens_the_panel_at_the_panels_own_defaults():
    parser = MlsysMagics.hogwild.parser
    for flag, name in [("rows", "rows"), ("features_log2", "features_log2"), ("nnz", "nnz_per_row"),
                       ("epochs", "epochs"), ("lr", "lr"), ("loss", "loss")]:
        assert parser.get_default(flag) == default_of(hogwild_panel.HogwildPanel, name), flag


def test_a_redrawn_plot_keeps_one_legend_entry_per_series():
    m = bloom_panel.measure_bloom(BloomFilter(1_000, 0.01))
    figure = None
    for _ in range(3):
        _, _, figure = bloom_panel.draw_bloom(m, figure)
    labels = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert len(labels) == len(set(labels)) == 5, labels  # errorbar groups once outlived their redraw


class Gated(LabPanel):
    """A panel whose measurement waits at a gate between its two steps, so a test can move a slider mid-run."""

    def __init__(self):
        self.gate = threading.Event()
        self.started = threading.Event()
        self.drawn = []
        super().__init__("gated", {"x": slider(widgets.IntSlider, "x", value=0, min=0, max=10)})

    def measure(self, x):
        self.started.set()
        self.gate.wait(10)
        self.checkpoint()
        return x

    def draw(self, result):
        self.drawn.append(result)
        return png_of(new_figure(1.0, 1.0)), f"x = {result}"


def test_a_newer_slider_move_supersedes_a_run_in_progress_which_is_never_drawn():
    panel = Gated()
    assert panel.started.wait(10)
    panel.controls["x"].value = 3  # arrives while x = 0 is measuring
    panel.controls["x"].value = 7  # and coalesces with this one
    panel.gate.set()
    assert panel.wait(10)
    assert panel.drawn == [7] and panel.result == 7 and panel.summary.value == "x = 7"
    assert re.fullmatch(r"measured in \d+ ms, drawn in \d+ ms", panel.status.value), panel.status.value


class GatedPerValue(Gated):
    """A panel with one gate per slider value and no checkpoint: a move that arrives while a
    run measures is measured after that run is drawn."""

    def __init__(self):
        self.gates = {x: threading.Event() for x in range(11)}
        self.begun = {x: threading.Event() for x in range(11)}
        super().__init__()

    def measure(self, x):
        self.begun[x].set()
        self.gates[x].wait(10)
        return x


def test_the_status_says_measuring_while_a_newer_slider_move_is_measured():
    panel = GatedPerValue()
    assert panel.begun[0].wait(10)
    panel.controls["x"].value = 3
    panel.gates[0].set()  # x = 0 is drawn, then x = 3 measured
    assert panel.begun[3].wait(10)
    assert panel.drawn == [0] and panel.status.value == "measuring ..."  # not x = 0's "measured in ..."
    panel.gates[3].set()
    assert panel.wait(10) and panel.drawn == [0, 3]


def test_kmeans_says_why_scikit_learn_has_no_bar(monkeypatch):
    timings = iter([1e-3, 0.9e-3])  # its fit of several iterations no slower than its fit of one
    monkeypatch.setattr(kmeans_panel, "best_seconds", lambda call, repeats, budget: call() or next(timings))
    m = kmeans_panel.measure_kmeans(1_000, 2, 2, "numpy", threads=1)
    assert "scikit-learn" not in m.seconds_per_iteration and "its fixed costs hide an iteration's" in m.untimed
    assert f"no scikit-learn bar: {m.untimed}" in kmeans_panel.draw_kmeans(m)[1]
