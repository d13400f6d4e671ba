"""Swap preemption, the cost model's fit, capacity search, and the rest of the effects the literature reports."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys_ext.serving import (Capacity, ContinuousBatcher, CostModel, DynamicBatcher, Lengths, StaticBatcher,
                               Workload, capacity, simulate)

ONE_SECOND = CostModel(overhead=1.0, per_token=0.0, per_pair=0.0, weights=0.0, per_kv_token=0.0,
                       per_swap_token=0.0)


def pressured(seed=4, n=200):
    """A backlog of long outputs in a small KV budget: preemption is certain."""
    return Workload.poisson(500.0, n, Lengths.uniform(16, 64), Lengths.exponential(96.0, high=400), seed=seed)


def test_swap_moves_kv_out_and_back_instead_of_recomputing_it():
    recompute = simulate(pressured(), ContinuousBatcher(32, 2048, kv_tokens=2048, block=16))
    swap = simulate(pressured(), ContinuousBatcher(32, 2048, kv_tokens=2048, block=16, preempt="swap"))
    prompts = pressured().prompt.sum()
    assert recompute.requests.preemptions.sum() > 0 and swap.requests.preemptions.sum() > 0
    assert recompute.timeline.prefill_tokens.sum() > prompts  # recomputed prompts and outputs
    assert recompute.timeline.swap_tokens.sum() == 0
    assert swap.timeline.prefill_tokens.sum() == prompts  # every prompt prefilled once
    assert swap.timeline.swap_tokens.sum() > 0
    assert swap.timeline.preempted.sum() == swap.requests.preemptions.sum()


def test_a_swapped_request_resumes_decoding_with_its_kv_moved_back():
    # two requests of prompt 4, output 6 in 16 KV tokens of blocks of 4: the second is swapped out once
    workload = Workload([0.0, 0.0], [4, 4], [6, 6])
    result = simulate(workload, ContinuousBatcher(2, 64, kv_tokens=16, block=4, preempt="swap"), ONE_SECOND)
    t = result.timeline
    assert result.requests.preemptions.tolist() == [0, 1]
    assert t.prefill_tokens.sum() == 8 and t.decode_seqs.sum() == 10  # no token computed twice
    moved = t.swap_tokens[t.swap_tokens > 0].tolist()
    assert len(moved) == 2 and moved[0] == moved[1]  # out, then the same tokens back in
    assert t.kv_tokens.max() <= 16


@given(seed=st.integers(0, 10**6), n=st.integers(1, 40), block=st.sampled_from([1, 4, 16]),
       chunk=st.sampled_from([None, 8]))
@settings(max_examples=40, deadline=None)
def test_swap_conserves_requests_tokens_and_memory(seed, n, block, chunk):
    workload = Workload.poisson(50.0, n, Lengths.uniform(1, 24), Lengths.uniform(1, 40), seed=seed)
    scheduler = ContinuousBatcher(8, 32, chunk=chunk, kv_tokens=96, block=block, preempt="swap")
    result = simulate(workload, scheduler)
    r, t = result.requests, result.timeline
    assert r.finish.notna().all() and (r.first_token <= r.finish).all()
    assert t.prefill_tokens.sum() == workload.prompt.sum()  # swapping never recomputes
    assert t.decode_seqs.sum() + n == workload.output.sum()  # one token per decode, one per prefill
    assert t.kv_tokens.max() <= 96


def test_the_fit_recovers_a_cost_model_from_its_own_timeline():
    truth = CostModel(overhead=0.003, per_token=4e-5, per_pair=5e-9, weights=0.008, per_kv_token=3e-7,
                      per_swap_token=0.0)
    workload = Workload.poisson(40.0, 400, Lengths.uniform(16, 1024), Lengths.exponential(64.0, high=512), seed=5)
    timeline = simulate(workload, ContinuousBatcher(32, 2048), truth).timeline
    fitted = CostModel.fit(timeline)
    seconds = (timeline.end - timeline.start).to_numpy()
    predicted = np.array([fitted.iteration(p, d, a, k) for p, d, a, k in
                          zip(timeline.prefill_tokens, timeline.decode_seqs, timeline.attention_pairs,
                              timeline.kv_read)])
    assert np.abs(predicted / seconds - 1).max() < 0.01
    assert fitted.per_token == pytest.approx(truth.per_token, rel=0.05)
    with pytest.raises(ValueError, match="at least 6 iterations"):
        CostModel.fit(timeline.head(3))
    with pytest.raises(ValueError, match="lacks column"):
        CostModel.fit(timeline.drop(columns="kv_read"))
    with pytest.raises(ValueError, match="per_token must be a finite number >= 0"):
        CostModel(per_token=-1.0)


def test_at_rate_rescales_arrivals_and_keeps_lengths():
    workload = Workload.gamma(4.0, 3.0, 500, Lengths.fixed(8), Lengths.uniform(1, 9), seed=6)
    faster = workload.at_rate(20.0)
    assert faster.describe()["rate"] == pytest.approx(20.0)
    assert faster.describe()["cv"] == pytest.approx(workload.describe()["cv"])
    assert (faster.output == workload.output).all()
    with pytest.raises(ValueError, match="rate must be a positive number"):
        workload.at_rate(0)


def test_capacity_brackets_the_highest_rate_that_meets_the_target():
    workload = Workload.poisson(10.0, 600, Lengths.fixed(128), Lengths.exponential(48.0, high=256), seed=7)
    slo = dict(ttft=0.5, tpot=0.05)
    found = capacity(workload, ContinuousBatcher(32, 2048), slo, attainment=0.9, tolerance=0.05)
    assert isinstance(found, Capacity) and found.rate > 0 and found.attainment >= 0.9
    probes = found.probes
    above = probes[probes.rate > found.rate]
    assert len(above) and above.rate.min() <= found.rate * 1.05 + 1e-9  # bracketed within the tolerance
    assert (above.slo_attainment.iloc[:1] < 0.9).all()
    again = simulate(workload.at_rate(found.rate), ContinuousBatcher(32, 2048)).summary(slo)
    assert again.slo_attainment == pytest.approx(found.attainment)
    with pytest.raises(ValueError, match="slo must set at least one of ttft, tpot, e2e"):
        capacity(workload, ContinuousBatcher(), {"latency": 1.0})
    impossible = capacity(workload, ContinuousBatcher(32, 2048), dict(ttft=1e-6), max_probes=8)
    assert impossible.rate == 0.0


def test_bursty_arrivals_lower_slo_capacity_at_equal_mean_rate():
    slo = dict(ttft=0.5, tpot=0.05)
    rates = []
    for cv in (1.0, 4.0):
        workload = Workload.gamma(10.0, cv, 1500, Lengths.fixed(128), Lengths.exponential(48.0, high=256), seed=8)
        rates.append(capacity(workload, ContinuousBatcher(32, 2048), slo, attainment=0.9).rate)
    assert rates[1] < 0.8 * rates[0]


def test_goodput_peaks_while_throughput_keeps_rising():
    base = Workload.poisson(1.0, 1500, Lengths.fixed(256), Lengths.exponential(64.0, high=512), seed=9)
    slo = dict(ttft=0.5, tpot=0.05)
    rows = [simulate(base.at_rate(rate), ContinuousBatcher(32, 4096)).summary(slo) for rate in
            (4, 8, 16, 24, 32, 48, 64)]
    throughput = np.array([row.throughput for row in rows])
    goodput = np.array([row.goodput for row in rows])
    assert (np.diff(throughput) > -0.02 * throughput[1:]).all()  # still rising (or flat at saturation)
    peak = int(goodput.argmax())
    assert 0 < peak < len(rows) - 1 and goodput[-1] < 0.5 * goodput[peak]
    assert throughput[-1] > throughput[peak]


def test_a_small_token_budget_lowers_inter_token_latency_and_raises_ttft():
    workload = Workload.poisson(6.0, 600, Lengths.uniform(512, 3072), Lengths.exponential(128.0, high=1024), seed=10)
    small = simulate(workload, ContinuousBatcher(64, 256, chunk=256))
    large = simulate(workload, ContinuousBatcher(64, 4096, chunk=4096))
    assert np.percentile(small.inter_token_latencies(), 99) < 0.5 * np.percentile(large.inter_token_latencies(), 99)
    assert small.summary().ttft_p50 > 1.1 * large.summary().ttft_p50


def test_chunked_prefill_removes_decode_stalls_behind_long_prompts():
    # steady short chats decoding, and now and then an 8k-token document arrives
    chats = Workload.poisson(8.0, 400, Lengths.fixed(64), Lengths.fixed(128), seed=11)
    documents = Workload.poisson(0.2, 10, Lengths.fixed(8000), Lengths.fixed(16), seed=12)
    order = np.argsort(np.concatenate([chats.arrival, documents.arrival + 1.0]), kind="stable")
    mixed = Workload(np.concatenate([chats.arrival, documents.arrival + 1.0])[order],
                     np.concatenate([chats.prompt, documents.prompt])[order],
                     np.concatenate([chats.output, documents.output])[order])
    whole = simulate(mixed, ContinuousBatcher(64, 8192))
    chunked = simulate(mixed, ContinuousBatcher(64, 8192, chunk=512))
    stall, smooth = whole.inter_token_latencies().max(), chunked.inter_token_latencies().max()
    assert stall > 3 * smooth  # a decode waits for a whole 8k prefill, or for one 512-token chunk


def test_a_queue_delay_hurts_only_at_low_load():
    def penalty(rate):
        workload = Workload.poisson(rate, 800, Lengths.fixed(64), Lengths.fixed(32), seed=13)
        eager = simulate(workload, StaticBatcher(16)).summary().e2e_p50
        waiting = simulate(workload, DynamicBatcher(16, max_wait=0.2)).summary().e2e_p50
        return waiting - eager
    low, high = penalty(1.0), penalty(2000.0)
    assert low > 0.1  # alone in the queue, a request waits most of the 0.2 s deadline
    assert high < 0.2 * low  # under a backlog batches fill before the deadline (waiting may even help)
