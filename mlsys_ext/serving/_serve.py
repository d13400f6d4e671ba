"""The real executor: the schedulers' own state machine (``_engine``) drives a real model.

Each iteration the scheduler plans as in ``simulate``; the model then runs that batch
(prefill chunks and decodes in one forward pass over its KV cache) and the measured
seconds, not a cost model, move the clock. Idle gaps between arrivals are skipped, not
slept: the clock is the work's own time, so a run takes as long as its compute.
"""
from __future__ import annotations

import time

import numpy as np

from . import _engine as engine
from ._transformer import TinyTransformer
from ._simulate import SimulationResult, _check, _result
from ._workload import Workload


def serve(workload: Workload, scheduler, model: TinyTransformer | None = None, seed=0) -> SimulationResult:
    """Serve ``workload`` with ``scheduler`` on ``model`` (default ``TinyTransformer()``):
    prompts are random token ids (seeded), outputs greedy. Returns what ``simulate``
    returns, with measured iteration times."""
    _check(workload, scheduler)
    model = model or TinyTransformer()
    if not isinstance(model, TinyTransformer):
        raise TypeError(f"model must be a TinyTransformer, got {type(model).__name__}")
    context = int(workload.prompt.max() + workload.output.max())  # static padding members included
    if context > model.max_len:
        raise ValueError(f"requests need up to {context} positions, more than the model's max_len={model.max_len}")
    rng = np.random.default_rng(seed)
    tokens = [list(rng.integers(0, model.vocab, size=p)) for p in workload.prompt]
    n, params = len(workload), scheduler._params()
    req, times, queue, running, scal = engine.new_state(workload.arrival, workload.prompt, workload.output,
                                                        params[engine.MAX_SEQS])
    entries = np.zeros((scheduler.max_seqs, 2), np.int64)
    events = np.zeros((n, 2), np.int64)
    planned = np.zeros(engine.P_SIZE, np.int64)
    cache = model.new_cache(scheduler.max_seqs, context)
    free, slot_of, swapped = list(range(scheduler.max_seqs))[::-1], {}, {}
    timeline, now = [], 0.0
    while scal[engine.DONE] < n:
        wake = engine.plan(req, times, queue, running, scal, params, scheduler.wait, now, entries, events, planned)
        started = time.perf_counter()
        preempted = 0
        for r, kind in events[:planned[engine.P_EVENTS]]:
            if kind == engine.PREEMPTED:
                preempted += 1
                slot = slot_of.pop(r)
                if params[engine.SWAP]:
                    swapped[r] = cache.save(slot)
                else:
                    cache.clear(slot)
                free.append(slot)
            else:
                slot_of[r] = free.pop()
                cache.load(slot_of[r], swapped.pop(r))
        count = planned[engine.P_ENTRIES]
        if count == 0 and planned[engine.P_SWAP_TOKENS] == 0:
            now = max(now, wake)
            continue
        prefills, decodes = [], []
        for r, take in entries[:count]:
            if r not in slot_of:
                slot_of[r] = free.pop()
            if take > 0:
                done = req[r, engine.PREFILLED]
                prefills.append((r, slot_of[r], np.asarray(tokens[r][done:done + take], dtype=np.int64)))
            else:  # a decode, or a finished static member computed as padding
                decodes.append((r, slot_of[r], int(tokens[r][-1])))
        produced = model.forward_step(cache, [(s, t) for _, s, t in prefills], [(s, t) for _, s, t in decodes])
        step = time.perf_counter() - started
        timeline.append((now, now + step, planned[engine.P_PREFILL_TOKENS], planned[engine.P_DECODE_SEQS],
                         planned[engine.P_PAIRS], planned[engine.P_KV_READ], scal[engine.USED], preempted,
                         planned[engine.P_SWAP_TOKENS]))
        now += step
        ran = [r for r, _, _ in prefills + decodes]
        before = req[ran, engine.GENERATED]
        engine.advance(req, times, running, scal, params, now, entries, planned)
        for r, had, token in zip(ran, before, produced):
            if req[r, engine.GENERATED] > had:
                tokens[r].append(int(token))
        _release_finished(req, times, running, scal, cache, slot_of, free)
    served = _result(workload, req, times, np.array(timeline).reshape(-1, len(engine.TIMELINE_COLUMNS)))
    served.outputs = [np.array(t[p:], dtype=np.int64) for t, p in zip(tokens, workload.prompt)]
    return served


def _release_finished(req, times, running, scal, cache, slot_of, free) -> None:
    """Finished requests give their cache slots back; a static batch's members stay until it ends."""
    busy = set(running[:scal[engine.N_RUN]].tolist())
    for r in [r for r in slot_of if r not in busy and not np.isnan(times[r, engine.FINISH])]:
        cache.clear(slot_of[r])
        free.append(slot_of.pop(r))
