"""Workloads (synthetic and from the shared Azure traces) and the serving metrics on hand-computed cases."""
import pathlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys_ext.serving import Lengths, Workload, inter_token_latencies, meets_slo, request_metrics, summarize

TRACES = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "traces"


def test_metrics_on_a_hand_computed_case():
    # arrivals 0 and 1; first tokens at 0.5 and 1.2; finishes at 2.5 and 1.2; 5 and 1 output tokens
    requests = request_metrics([0.0, 1.0], [0.5, 1.2], [2.5, 1.2], [5, 1])
    assert requests.ttft.tolist() == pytest.approx([0.5, 0.2])
    assert requests.e2e.tolist() == pytest.approx([2.5, 0.2])
    assert requests.tpot[0] == pytest.approx((2.5 - 0.5) / 4) and np.isnan(requests.tpot[1])
    summary = summarize(requests, slo={"ttft": 0.3, "tpot": 0.6})
    assert summary.duration == pytest.approx(2.5)
    assert summary.throughput == pytest.approx(2 / 2.5) and summary.output_tokens_per_s == pytest.approx(6 / 2.5)
    assert summary.goodput == pytest.approx(1 / 2.5) and summary.slo_attainment == 0.5  # only the second meets TTFT
    assert summary.ttft_p50 == pytest.approx(0.35) and summary.tpot_p99 == pytest.approx(0.5)
    assert inter_token_latencies([[0.5, 1.0, 2.5], [1.2]]).tolist() == pytest.approx([0.5, 1.5])


def test_bad_metric_input_is_refused():
    with pytest.raises(ValueError, match="arrival <= first_token <= finish"):
        request_metrics([1.0], [0.5], [2.0], [3])
    with pytest.raises(ValueError, match="SLOs can be set on ttft, tpot, e2e, not itl"):
        meets_slo(request_metrics([0.0], [0.1], [0.2], [2]), {"itl": 0.1})


@pytest.mark.parametrize("cv", [0.5, 1.0, 3.0])
def test_gamma_arrivals_have_the_asked_rate_and_burstiness(cv):
    workload = Workload.gamma(rate=20.0, cv=cv, n=20_000, prompt=Lengths.fixed(8), output=Lengths.fixed(4), seed=1)
    facts = workload.describe()
    assert facts["rate"] == pytest.approx(20.0, rel=0.05) and facts["cv"] == pytest.approx(cv, rel=0.06)
    assert workload.arrival[0] == 0.0 and (np.diff(workload.arrival) >= 0).all()


@pytest.mark.parametrize("lengths, mean", [
    (Lengths.fixed(7), 7.0), (Lengths.uniform(10, 20), 15.0), (Lengths.exponential(50.0), 50.0),
    (Lengths.zipf(1.2, high=1000), None), (Lengths.empirical([3, 5, 10]), 6.0),
])
def test_length_distributions_sample_their_mean_within_bounds(lengths, mean):
    drawn = lengths.sample(np.random.default_rng(0), 50_000)
    assert drawn.min() >= lengths.low and drawn.max() <= lengths.high
    assert drawn.mean() == pytest.approx(lengths.mean() if mean is None else mean, rel=0.03)


@given(seed=st.integers(0, 10**6), n=st.integers(1, 300))
@settings(max_examples=30, deadline=None)
def test_same_seed_same_workload(seed, n):
    a = Workload.poisson(5.0, n, Lengths.exponential(100.0), Lengths.uniform(1, 64), seed=seed)
    b = Workload.poisson(5.0, n, Lengths.exponential(100.0), Lengths.uniform(1, 64), seed=seed)
    assert len(a) == n and all(np.array_equal(x, y) for x, y in zip(a.to_frame().values.T, b.to_frame().values.T))


@pytest.mark.parametrize("name, cv", [("splitwise_conv.csv", 1.09), ("splitwise_code.csv", 13.2)])
def test_the_azure_traces_load_with_their_published_shape(name, cv):
    path = TRACES / name
    if not path.exists():
        pytest.skip(f"{path} is not here")
    workload = Workload.from_trace(path)
    facts = workload.describe()
    assert workload.arrival[0] == 0.0 and facts["cv"] == pytest.approx(cv, rel=0.05)
    assert 50 * 60 < workload.arrival[-1] < 60 * 60
    assert Workload.from_trace(path, limit=100).prompt.tolist() == workload.prompt[:100].tolist()


def test_bad_workload_input_is_refused(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("time,prompt\n0,1\n")
    with pytest.raises(ValueError, match="missing column\\(s\\) arrived_at, num_prefill_tokens, num_decode_tokens"):
        Workload.from_trace(bad)
    with pytest.raises(ValueError, match="rate must be a positive number"):
        Workload.poisson(0, 10, Lengths.fixed(1), Lengths.fixed(1))
    with pytest.raises(TypeError, match="prompt must be a Lengths"):
        Workload.poisson(1.0, 10, 128, Lengths.fixed(1))
    with pytest.raises(ValueError, match="sorted"):
        Workload([1.0, 0.5], [1, 1], [1, 1])
    with pytest.raises(ValueError, match="low <= high"):
        Lengths.uniform(5, 2)
