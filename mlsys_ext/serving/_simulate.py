"""Serving schedulers simulated one model iteration at a time.

Each iteration the scheduler picks what runs (prompt tokens to prefill, sequences to
decode), the cost model says how long that takes, and every sequence in it advances:
a request's first token appears when its whole prompt has been prefilled, then one
token per iteration it decodes in. KV memory is counted in tokens: reserved for the
whole request up front (``block=None``), or in blocks of ``block`` tokens as the
sequence grows (paged), with the newest request preempted and recomputed when a
block cannot be had.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import pandas as pd

from ._metrics import request_metrics, summarize
from ._workload import Workload


@dataclass(frozen=True)
class CostModel:
    """Seconds for one iteration: a fixed overhead plus a roofline, the larger of the
    compute time (tokens processed) and the memory time (weights and KV read)."""

    overhead: float = 0.002
    per_token: float = 5e-5  # compute seconds per prefill token or decoded sequence
    weights: float = 0.006  # seconds to read the weights once
    per_kv_token: float = 2e-7  # seconds to read one token's keys and values

    def iteration(self, prefill_tokens: int, decode_seqs: int, kv_tokens: int) -> float:
        compute = self.per_token * (prefill_tokens + decode_seqs)
        memory = self.weights + self.per_kv_token * kv_tokens
        return self.overhead + max(compute, memory)


@dataclass
class _Request:
    id: int
    arrival: float
    prompt: int
    output: int
    to_prefill: int = 0  # tokens to prefill before it decodes: its prompt, plus, after a
    prefilled: int = 0   # recompute preemption, what it had generated
    generated: int = 0
    in_kv: int = 0  # tokens whose keys and values are stored
    kv: int = 0  # KV tokens held (reserved, or in allocated blocks)
    first_token: float = math.nan
    finish: float = math.nan
    preemptions: int = 0

    def __post_init__(self):
        self.to_prefill = self.prompt

    @property
    def decoding(self) -> bool:
        return self.prefilled == self.to_prefill and 0 < self.generated < self.output


class _Scheduler:
    """What all schedulers share: the knobs every one has, and KV accounting."""

    def __init__(self, max_seqs: int, kv_tokens: int | None, block: int | None, max_output: int):
        for name, value in (("max_seqs", max_seqs), ("kv_tokens", kv_tokens), ("block", block),
                            ("max_output", max_output)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.max_seqs, self.kv_tokens, self.block, self.max_output = max_seqs, kv_tokens, block, max_output

    def kv_need(self, request: _Request, tokens: int) -> int:
        """KV tokens ``request`` must hold to have ``tokens`` of context: whole blocks, or
        (reservation) the most it could ever need, its prompt plus ``max_output``: a
        scheduler cannot know in advance how many tokens a request will generate."""
        if self.block is None:
            return request.prompt + self.max_output
        return -(-tokens // self.block) * self.block


class StaticBatcher(_Scheduler):
    """Request-level batching: up to ``max_seqs`` waiting requests start together and the
    batch runs until its last request finishes; finished requests keep their slots."""

    def __init__(self, max_seqs: int = 32, kv_tokens: int | None = None, max_output: int = 1024):
        super().__init__(max_seqs, kv_tokens, None, max_output)
        self.wait = 0.0

    def ready(self, queue, now) -> bool:
        return bool(queue)


class DynamicBatcher(StaticBatcher):
    """Static batches that start when ``max_seqs`` requests wait or the oldest has waited
    ``max_wait`` seconds (Triton's and Ray Serve's dynamic batching)."""

    def __init__(self, max_seqs: int = 32, max_wait: float = 0.01, kv_tokens: int | None = None,
                 max_output: int = 1024):
        super().__init__(max_seqs, kv_tokens, max_output)
        if not max_wait >= 0:
            raise ValueError(f"max_wait must be >= 0 seconds, got {max_wait!r}")
        self.wait = float(max_wait)

    def ready(self, queue, now) -> bool:
        # compared as a deadline: now - arrival >= wait can round below wait at the deadline itself
        return len(queue) >= self.max_seqs or (bool(queue) and now >= queue[0].arrival + self.wait)


class ContinuousBatcher(_Scheduler):
    """Iteration-level batching (Orca): every iteration, running sequences decode one
    token and waiting requests join while ``max_seqs``, the ``max_tokens`` budget and KV
    memory allow. With ``chunk``, prompts are prefilled in chunks of at most that many
    tokens after the decodes (stall-free chunked prefill, as Sarathi-Serve)."""

    def __init__(self, max_seqs: int = 64, max_tokens: int = 2048, chunk: int | None = None,
                 kv_tokens: int | None = None, block: int | None = 16, preempt: str = "recompute",
                 max_output: int = 1024):
        super().__init__(max_seqs, kv_tokens, block, max_output)
        for name, value in (("max_tokens", max_tokens), ("chunk", chunk)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if preempt != "recompute":
            raise ValueError(f"preempt must be 'recompute' (swap is not modelled yet), got {preempt!r}")
        self.max_tokens, self.chunk, self.preempt = max_tokens, chunk, preempt


@dataclass
class SimulationResult:
    """``requests``: one row per request (id, arrival, first_token, finish, prompt, output,
    ttft, tpot, e2e, preemptions); ``timeline``: one row per iteration (start, end,
    prefill_tokens, decode_seqs, kv_read: tokens of KV the iteration reads, kv_tokens:
    KV tokens held, blocks and reservations included)."""

    requests: pd.DataFrame
    timeline: pd.DataFrame = field(repr=False)

    def summary(self, slo: dict | None = None) -> pd.Series:
        return summarize(self.requests, slo)


def simulate(workload: Workload, scheduler, cost: CostModel | None = None) -> SimulationResult:
    """Serve every request of ``workload`` with ``scheduler`` under ``cost``."""
    if not isinstance(workload, Workload):
        raise TypeError(f"workload must be a Workload, got {type(workload).__name__}")
    cost = cost or CostModel()
    requests = [_Request(i, float(a), int(p), int(o))
                for i, (a, p, o) in enumerate(zip(workload.arrival, workload.prompt, workload.output))]
    _check_fits(requests, scheduler)
    run = _run_continuous if isinstance(scheduler, ContinuousBatcher) else _run_static
    timeline = run(requests, scheduler, cost)
    frame = request_metrics([r.arrival for r in requests], [r.first_token for r in requests],
                            [r.finish for r in requests], [r.output for r in requests])
    frame.insert(0, "id", [r.id for r in requests])
    frame.insert(4, "prompt", [r.prompt for r in requests])
    frame["preemptions"] = [r.preemptions for r in requests]
    return SimulationResult(frame, pd.DataFrame(timeline, columns=["start", "end", "prefill_tokens",
                                                                   "decode_seqs", "kv_read", "kv_tokens"]))


def _check_fits(requests, scheduler) -> None:
    budget = scheduler.kv_tokens
    for request in requests:
        if request.output > scheduler.max_output:
            raise ValueError(f"request {request.id} asks for {request.output} tokens, more than max_output="
                             f"{scheduler.max_output}")
        if budget is not None and scheduler.kv_need(request, request.prompt + request.output) > budget:
            raise ValueError(f"request {request.id} needs "
                             f"{scheduler.kv_need(request, request.prompt + request.output)} KV tokens, "
                             f"more than kv_tokens={budget}")
        if isinstance(scheduler, ContinuousBatcher) and scheduler.chunk is None \
                and request.prompt > scheduler.max_tokens:
            raise ValueError(f"request {request.id}'s prompt of {request.prompt} tokens exceeds max_tokens="
                             f"{scheduler.max_tokens}: set chunk to prefill it in pieces")


def _run_static(requests, scheduler, cost) -> list:
    timeline, queue, now, arriving = [], deque(), 0.0, deque(requests)
    while arriving or queue:
        while arriving and arriving[0].arrival <= now:
            queue.append(arriving.popleft())
        if not scheduler.ready(queue, now):
            waits = [arriving[0].arrival] if arriving else []
            if queue:
                waits.append(queue[0].arrival + scheduler.wait)
            now = max(now, min(waits))
            continue
        batch, used = [], 0
        while queue and len(batch) < scheduler.max_seqs:
            need = scheduler.kv_need(queue[0], 0)
            if scheduler.kv_tokens is not None and used + need > scheduler.kv_tokens:
                break
            used += need
            batch.append(queue.popleft())
        # one iteration prefills every prompt (the first token of each), then the batch decodes
        # in lockstep: a finished request still holds its slot until the longest one is done
        prompts = sum(r.prompt for r in batch)
        step = cost.iteration(prompts, 0, prompts)
        timeline.append((now, now + step, prompts, 0, prompts, used))
        now += step
        for r in batch:
            r.prefilled, r.generated, r.first_token = r.prompt, 1, now
            if r.output == 1:
                r.finish = now
        for _ in range(max(r.output for r in batch) - 1):
            kv = sum(r.prompt + r.generated for r in batch)
            step = cost.iteration(0, len(batch), kv)
            timeline.append((now, now + step, 0, len(batch), kv, used))
            now += step
            for r in batch:
                if r.generated < r.output:
                    r.generated += 1
                    if r.generated == r.output:
                        r.finish = now
    return timeline


def _run_continuous(requests, scheduler, cost) -> list:
    timeline, queue, running, now, arriving = [], deque(), [], 0.0, deque(requests)
    used = 0  # KV tokens held by running requests
    budget = scheduler.kv_tokens if scheduler.kv_tokens is not None else math.inf

    def hold(r, tokens):  # make r hold KV for ``tokens`` tokens of context
        nonlocal used
        need = scheduler.kv_need(r, tokens)
        used += need - r.kv
        r.kv = max(r.kv, need)

    def preempt(victim):  # recompute: drop its KV; it prefills its prompt and output so far again
        nonlocal used
        running.remove(victim)
        used -= victim.kv
        victim.kv = victim.in_kv = victim.prefilled = 0
        victim.to_prefill = victim.prompt + victim.generated
        victim.preemptions += 1
        queue.appendleft(victim)

    while arriving or queue or running:
        while arriving and arriving[0].arrival <= now:
            queue.append(arriving.popleft())
        # decodes first: each stores one more token of KV; when no block is left, the newest
        # running request is preempted (possibly the one asking)
        decoding = []
        for r in [r for r in running if r.decoding]:
            if r not in running:
                continue
            while r in running and scheduler.kv_need(r, r.in_kv + 1) - r.kv > budget - used:
                preempt(running[-1])
            if r in running:
                hold(r, r.in_kv + 1)
                decoding.append(r)
        tokens_left = scheduler.max_tokens - len(decoding)
        prefills = []  # (request, tokens) this iteration
        for r in running:  # admitted earlier, still prefilling in chunks
            if r.prefilled < r.to_prefill and tokens_left > 0:
                take = min(r.to_prefill - r.prefilled, tokens_left, scheduler.chunk or tokens_left)
                if scheduler.kv_need(r, r.in_kv + take) - r.kv <= budget - used:
                    hold(r, r.in_kv + take)
                    prefills.append((r, take))
                    tokens_left -= take
        while queue and len(running) < scheduler.max_seqs and tokens_left > 0:
            r = queue[0]
            take = min(r.to_prefill, tokens_left, scheduler.chunk or r.to_prefill)
            if scheduler.chunk is None and take < r.to_prefill:
                break  # without chunking a prompt is prefilled whole, or waits
            if scheduler.kv_need(r, take) > budget - used:
                break
            queue.popleft()
            running.append(r)
            hold(r, take)
            prefills.append((r, take))
            tokens_left -= take
        if not decoding and not prefills:
            if running:  # half-prefilled requests hold the memory each needs: free the newest
                preempt(running[-1])
            elif arriving:
                now = max(now, arriving[0].arrival)
            continue
        prefill_tokens = sum(take for _, take in prefills)
        kv = sum(r.in_kv + 1 for r in decoding) + sum(r.in_kv + take for r, take in prefills)
        step = cost.iteration(prefill_tokens, len(decoding), kv)
        timeline.append((now, now + step, prefill_tokens, len(decoding), kv, used))
        now += step
        for r in decoding:
            r.in_kv += 1
            r.generated += 1
        for r, take in prefills:
            r.prefilled += take
            r.in_kv += take
            if r.prefilled == r.to_prefill:
                r.generated += 1  # the pass over the last prompt token yields the next token
                if r.generated == 1:
                    r.first_token = now
        for r in [r for r in running if r.generated >= r.output]:
            r.finish = now
            running.remove(r)
            used -= r.kv
            r.kv = 0
    return timeline
