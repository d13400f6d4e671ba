"""The real executor: the schedulers' own decisions on a real model, its outputs, and the fitted simulator's accuracy."""
import numpy as np
import pytest

from mlsys_ext.serving import (ContinuousBatcher, CostModel, DynamicBatcher, Lengths, StaticBatcher, TinyTransformer,
                               Workload, serve, simulate)

SHAPE_COLUMNS = ["prefill_tokens", "decode_seqs", "attention_pairs", "kv_read", "kv_tokens", "preempted",
                 "swap_tokens"]


@pytest.fixture(scope="module")
def model():
    return TinyTransformer(layers=2, d_model=64, heads=4, kv_heads=2, vocab=101, max_len=512, seed=2)


def backlog(n=12, seed=0):
    """Requests that all wait at t=0: the schedulers' decisions do not depend on timing."""
    return Workload(np.zeros(n), *(Lengths.uniform(2, 40).sample(np.random.default_rng(seed + i), n) for i in (0, 1)))


def greedy(model, prompt, count):
    cache, produced = model.new_cache(1, len(prompt) + count), []
    produced.append(model.forward_step(cache, [(0, prompt)], [])[0])
    while len(produced) < count:
        produced.append(model.forward_step(cache, [], [(0, int(produced[-1]))])[0])
    return np.array(produced)


@pytest.mark.parametrize("scheduler", [
    StaticBatcher(4, max_output=64), ContinuousBatcher(4, 64, max_output=64),
    ContinuousBatcher(5, 24, chunk=8, block=4, max_output=64),
    ContinuousBatcher(6, 64, kv_tokens=96, block=8, max_output=64),
    ContinuousBatcher(6, 64, kv_tokens=96, block=8, preempt="swap", max_output=64),
], ids=["static", "continuous", "chunked", "recompute", "swap"])
def test_serve_makes_the_simulators_decisions_and_batching_never_changes_outputs(model, scheduler):
    workload = backlog()
    real = serve(workload, scheduler, model, seed=3)
    simulated = simulate(workload, scheduler)
    assert real.timeline[SHAPE_COLUMNS].equals(simulated.timeline[SHAPE_COLUMNS])
    assert real.requests.preemptions.tolist() == simulated.requests.preemptions.tolist()
    assert (real.timeline.end > real.timeline.start).all()
    # every request's tokens are what the model makes for it alone: preempted, swapped or chunked alike
    prompts = np.random.default_rng(3)
    for request, output in enumerate(real.outputs):
        prompt = prompts.integers(0, model.vocab, size=workload.prompt[request])
        assert np.array_equal(output, greedy(model, prompt, workload.output[request])), request


def test_serve_refuses_requests_longer_than_the_model(model):
    with pytest.raises(ValueError, match="more than the model's max_len=512"):
        serve(Workload([0.0], [500], [20]), ContinuousBatcher(max_output=64), model)
    with pytest.raises(TypeError, match="model must be a TinyTransformer"):
        serve(backlog(), ContinuousBatcher(), model="gpt")


def test_the_fitted_simulator_lands_within_25_percent_of_the_real_run():
    model = TinyTransformer()  # the size: 2 layers, d_model 128, 4 query heads over 2 KV heads
    workload = Workload.poisson(200.0, 40, Lengths.uniform(32, 192), Lengths.exponential(32.0, high=128), seed=4)
    serve(Workload([0.0], [8], [2]), ContinuousBatcher(2, 64), model)  # warm up caches and kernels
    for scheduler in (ContinuousBatcher(8, 512, max_output=128), DynamicBatcher(8, 0.01, max_output=128)):
        errors = []
        for _attempt in range(3):  # another process on the machine slows random iterations: measure again
            real = serve(workload, scheduler, model)
            predicted = simulate(workload, scheduler, CostModel.fit(real.timeline)).summary()
            measured = real.summary()
            errors.append((predicted.e2e_p50 / measured.e2e_p50 - 1, predicted.throughput / measured.throughput - 1))
            if max(abs(e) for e in errors[-1]) <= 0.25:
                break
        assert max(abs(e) for e in errors[-1]) <= 0.25, f"{scheduler}: (p50, throughput) errors {errors}"
