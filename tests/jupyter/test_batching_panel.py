"""The %batching panel, headless: knobs moved through ipywidgets' test comm, the simulations checked."""
import re
from pathlib import Path

import numpy as np
import pytest
from ipywidgets.widgets.tests.utils import setup_test_comm, teardown_test_comm

from mlsys_ext.jupyter import BatchingPanel
from mlsys_ext.jupyter.batching_panel import KNOBS, build_scheduler, draw_batching, measure_batching, saturation_rate
from mlsys_ext.serving import ContinuousBatcher, CostModel, Lengths, StaticBatcher, Workload, simulate

TRACES = Path(__file__).resolve().parents[3] / "shared" / "data" / "traces"


@pytest.fixture
def comm():
    setup_test_comm()
    yield
    teardown_test_comm()


def test_moving_the_policy_reschedules_and_disables_the_knobs_it_does_not_use(comm):
    panel = BatchingPanel(policy="static", rate=6.0, requests=400)
    assert panel.wait()
    static = panel.result
    assert isinstance(static.scheduler, StaticBatcher)
    assert panel.controls["max_tokens"].disabled and panel.controls["chunk"].disabled
    assert not panel.controls["max_seqs"].disabled
    panel.controls["policy"].value = "chunked"
    assert panel.wait()
    chunked = panel.result
    assert chunked.scheduler.chunk == panel.controls["chunk"].value
    assert not panel.controls["chunk"].disabled and panel.controls["max_wait_ms"].disabled
    assert {name for name in KNOBS["chunked"] if not panel.controls[name].disabled} == KNOBS["chunked"]
    # the same requests: iteration-level batching finishes them sooner than whole-batch batching
    assert chunked.result.summary().e2e_p50 < static.result.summary().e2e_p50
    assert bytes(panel.plot.value[:4]) == b"\x89PNG" and "goodput" in panel.summary.value
    assert re.fullmatch(r"measured in \d+ ms, drawn in \d+ ms", panel.status.value), panel.status.value


def test_a_smaller_kv_budget_preempts_and_the_swap_knob_moves_kv_instead_of_recomputing(comm):
    panel = BatchingPanel(policy="continuous", rate=40.0, requests=300)
    assert panel.wait()
    panel.controls["kv_tokens"].value = 8192
    assert panel.wait()
    recompute = panel.result.result
    assert recompute.requests.preemptions.sum() > 0 and recompute.timeline.kv_tokens.max() <= 8192
    panel.controls["preempt"].value = "swap"
    assert panel.wait()
    assert panel.result.result.timeline.swap_tokens.sum() > 0


def test_the_saturation_line_is_where_a_long_run_stops_keeping_up():
    prompt, output = Lengths.uniform(32, 512), Lengths.exponential(128.0, high=1024)
    for scheduler in (ContinuousBatcher(64, 4096, chunk=512, kv_tokens=65_536), StaticBatcher(64, kv_tokens=65_536)):
        overloaded = Workload.poisson(80.0, 6000, prompt, output, seed=0)
        predicted = saturation_rate(overloaded, scheduler, CostModel())
        served = simulate(overloaded, scheduler).summary().throughput  # a backlog: what the server sustains
        assert predicted == pytest.approx(served, rel=0.2), type(scheduler).__name__


def test_the_sweep_straddles_the_saturation_rate_and_passes_through_the_chosen_one():
    m = measure_batching("continuous", 32, 20.0, 2048, 512, 32_768, "16", "recompute", 0.5, 1.0, "chat", 1.0, 0.05,
                         requests=300)
    assert m.sweep.rate.min() == pytest.approx(0.5)
    assert m.sweep.rate.min() < m.saturation < m.sweep.rate.max()
    assert m.sweep.e2e_p50.iloc[-1] > m.sweep.e2e_p50.iloc[0]  # latency grows with the rate
    assert build_scheduler("dynamic", 8, 50.0, 512, 64, "unlimited", "reserve", "swap").wait == 0.05
    with pytest.raises(ValueError, match="raise the budget, or choose chunked"):
        measure_batching("continuous", 32, 20.0, 1024, 512, "unlimited", "16", "recompute", 4.0, 1.0, "long-prompt",
                         1.0, 0.05, requests=100)


def test_every_plot_keeps_its_title_and_axis_labels_across_redraws():
    m = measure_batching("continuous", 32, 20.0, 2048, 512, 32_768, "16", "recompute", 8.0, 1.0, "chat", 1.0, 0.05,
                         requests=300)
    _, _, figure = draw_batching(m)
    _, _, figure = draw_batching(m, figure)  # a slider move reuses the figure
    stick, batches, memory, rates = figure.axes
    for ax in (stick, batches, memory):
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel(), ax.get_title()
    assert "(s)" in stick.get_ylabel() and "req/s" in stick.get_xlabel() and rates.get_ylabel() == "req/s"


def test_the_real_model_button_serves_off_the_main_thread_and_overlays_the_fitted_simulator(comm):
    panel = BatchingPanel(policy="continuous", rate=20.0, requests=200)
    assert panel.wait()
    worker = panel._run_real()
    assert worker.name == "BatchingPanel-real"
    worker.join(timeout=120)
    assert panel.wait()
    real = panel.result.real
    assert real is not None and real["requests"] == 48
    assert real["simulated"].output_tokens_per_s == pytest.approx(real["real"].output_tokens_per_s, rel=0.25)
    assert "real model, 48 requests" in panel.summary.value and not panel.real_button.disabled
    panel.controls["rate"].value = 10.0  # another setting: the overlay no longer applies
    assert panel.wait()
    assert panel.result.real is None


def test_bad_settings_are_refused_and_a_trace_can_be_replayed(comm):
    with pytest.raises(ValueError, match="policy must be one of"):
        BatchingPanel(policy="fifo")
    with pytest.raises(ValueError, match="is not a trace: expected a CSV with columns"):
        BatchingPanel(trace="/no/such.csv")
    with pytest.raises(ValueError, match="lengths must be one of chat, long-prompt, zipf"):
        BatchingPanel(lengths="trace")
    trace = TRACES / "splitwise_code.csv"
    if not trace.exists():
        pytest.skip("the shared traces are not beside the project")
    panel = BatchingPanel(policy="chunked", trace=str(trace), rate=3.0, requests=300)
    assert panel.wait()
    assert panel.controls["lengths"].value == "trace" and panel.controls["cv"].disabled
    assert panel.controls["lengths"].options[0][0].startswith("chat: prompt uniform 32-512")
    assert panel.result.workload.describe()["rate"] == pytest.approx(3.0)
    assert np.array_equal(panel.result.workload.prompt, Workload.from_trace(trace, limit=300).prompt)
