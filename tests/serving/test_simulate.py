"""The serving schedulers: exact timelines on tiny traces, conservation, and the effects the literature reports."""
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys_ext.serving import (ContinuousBatcher, CostModel, DynamicBatcher, Lengths, StaticBatcher, Workload,
                               request_metrics, simulate)

ONE_SECOND = CostModel(overhead=1.0, per_token=0.0, per_pair=0.0, weights=0.0, per_kv_token=0.0)  # 1 s each


def tiny():
    # two requests at t=0 (prompt 5; outputs 3 and 1) and one at t=0.5 (prompt 4, output 2)
    return Workload([0.0, 0.0, 0.5], [5, 5, 4], [3, 1, 2])


def test_static_batches_run_until_their_longest_request_is_done():
    result = simulate(tiny(), StaticBatcher(max_seqs=2), ONE_SECOND)
    r = result.requests
    assert r.first_token.tolist() == [1.0, 1.0, 4.0] and r.finish.tolist() == [3.0, 1.0, 5.0]
    t = result.timeline
    assert t.prefill_tokens.tolist() == [10, 0, 0, 4, 0]
    assert t.decode_seqs.tolist() == [0, 2, 2, 0, 1]  # the finished request keeps its slot
    assert t.start.tolist() == [0, 1, 2, 3, 4]


def test_continuous_batching_lets_a_request_join_at_the_next_iteration():
    result = simulate(tiny(), ContinuousBatcher(max_seqs=4, max_tokens=64, block=None), ONE_SECOND)
    r = result.requests
    assert r.first_token.tolist() == [1.0, 1.0, 2.0] and r.finish.tolist() == [3.0, 1.0, 3.0]
    t = result.timeline
    assert t.prefill_tokens.tolist() == [10, 4, 0] and t.decode_seqs.tolist() == [0, 1, 2]
    assert r.tpot[0] == pytest.approx(1.0) and r.ttft[2] == pytest.approx(1.5)


def test_dynamic_batching_waits_for_a_full_batch_or_the_deadline():
    workload = Workload([0.0, 0.3, 5.0], [1, 1, 1], [1, 1, 1])
    result = simulate(workload, DynamicBatcher(max_seqs=2, max_wait=1.0), ONE_SECOND)
    assert result.requests.first_token.tolist() == [1.3, 1.3, 7.0]  # full at 0.3; the third waits 1 s alone


def test_chunked_prefill_splits_a_long_prompt_behind_running_decodes():
    workload = Workload([0.0, 1.0], [2, 10], [6, 1])
    chunked = simulate(workload, ContinuousBatcher(max_seqs=4, max_tokens=4, chunk=3, block=None), ONE_SECOND)
    t = chunked.timeline
    assert t.prefill_tokens.tolist()[:5] == [2, 3, 3, 3, 1]  # the decode goes first, a chunk fills the rest
    assert (t.decode_seqs[1:5] == 1).all()
    with pytest.raises(ValueError, match="exceeds max_tokens=4: set chunk"):
        simulate(workload, ContinuousBatcher(max_seqs=4, max_tokens=4, block=None), ONE_SECOND)


schedulers = st.sampled_from([
    StaticBatcher(4), DynamicBatcher(3, 0.2), ContinuousBatcher(4, 64, block=None),
    ContinuousBatcher(3, 16, chunk=5, block=4), ContinuousBatcher(8, 64, kv_tokens=80, block=4),
    ContinuousBatcher(8, 64, kv_tokens=80, block=None, max_output=20),
])


@given(seed=st.integers(0, 10**6), n=st.integers(1, 30), scheduler=schedulers)
@settings(max_examples=60, deadline=None)
def test_conservation_every_request_finishes_once_and_memory_stays_in_budget(seed, n, scheduler):
    workload = Workload.poisson(5.0, n, Lengths.uniform(1, 12), Lengths.uniform(1, 20), seed=seed)
    result = simulate(workload, scheduler, CostModel())
    r = result.requests
    assert len(r) == n and r.finish.notna().all()
    assert (r.arrival <= r.first_token).all() and (r.first_token <= r.finish).all()
    t = result.timeline
    assert (t.end > t.start).all() and (t.start.diff().dropna() > 0).all()
    if scheduler.kv_tokens is not None:
        assert t.kv_tokens.max() <= scheduler.kv_tokens
    if isinstance(scheduler, ContinuousBatcher):
        # a token per decode, one per finished prefill (more after a recompute preemption)
        assert t.decode_seqs.sum() + n + r.preemptions.sum() >= r.output.sum()
        assert t.prefill_tokens.sum() >= r.prompt.sum()


def test_continuous_beats_static_by_more_as_output_lengths_vary_more():
    gains = []
    for output in (Lengths.fixed(64), Lengths.exponential(64.0, high=2048)):
        workload = Workload.poisson(2000.0, 2000, Lengths.fixed(32), output, seed=1)  # a backlog: throughput-bound
        static = simulate(workload, StaticBatcher(32)).summary().output_tokens_per_s
        continuous = simulate(workload, ContinuousBatcher(32, 4096, block=None)).summary().output_tokens_per_s
        gains.append(continuous / static)
    assert gains[0] < 1.3 and gains[1] > 2.0  # with exponential lengths static keeps ~1/H_B of its slots busy


def test_paged_kv_fits_more_concurrent_requests_than_reservation():
    workload = Workload.poisson(2000.0, 300, Lengths.fixed(32), Lengths.exponential(64.0, high=512), seed=2)
    reserved = simulate(workload, ContinuousBatcher(64, 4096, kv_tokens=8192, block=None, max_output=512))
    paged = simulate(workload, ContinuousBatcher(64, 4096, kv_tokens=8192, block=16))
    assert paged.timeline.decode_seqs.mean() > 1.5 * reserved.timeline.decode_seqs.mean()
    assert paged.summary().output_tokens_per_s > reserved.summary().output_tokens_per_s


def test_latency_rises_slowly_then_explodes_with_the_arrival_rate():
    medians = []
    for rate in (2.0, 8.0, 32.0, 128.0):
        workload = Workload.poisson(rate, 600, Lengths.fixed(128), Lengths.fixed(64), seed=3)
        medians.append(simulate(workload, ContinuousBatcher(16, 2048)).summary().e2e_p50)
    assert medians[1] < 1.5 * medians[0] and medians[3] > 5 * medians[1]


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="max_seqs must be a positive integer"):
        StaticBatcher(0)
    with pytest.raises(ValueError, match="max_wait must be >= 0"):
        DynamicBatcher(4, -1.0)
    with pytest.raises(ValueError, match="preempt must be 'recompute' or 'swap'"):
        ContinuousBatcher(preempt="evict")
    with pytest.raises(ValueError, match="needs 1124 KV tokens, more than kv_tokens=1000"):
        simulate(Workload([0.0], [100], [200]), ContinuousBatcher(kv_tokens=1000, block=None))
    with pytest.raises(ValueError, match="asks for 200 tokens, more than max_output=64"):
        simulate(Workload([0.0], [100], [200]), StaticBatcher(max_output=64))
    with pytest.raises(TypeError, match="workload must be a Workload"):
        simulate([1, 2], StaticBatcher())


def test_the_requests_frame_holds_request_metrics_of_the_simulated_times():
    workload = Workload.gamma(4.0, 2.0, 200, Lengths.uniform(8, 64), Lengths.exponential(16.0, high=128), seed=3)
    requests = simulate(workload, ContinuousBatcher(8, 256)).requests
    assert list(requests.columns) == ["id", "arrival", "first_token", "finish", "prompt", "output", "ttft", "tpot",
                                      "e2e", "preemptions"]
    expected = request_metrics(workload.arrival, requests.first_token, requests.finish, workload.output)
    pd.testing.assert_frame_equal(requests[expected.columns], expected)
    assert requests.id.tolist() == list(range(200)) and requests.prompt.tolist() == workload.prompt.tolist()
