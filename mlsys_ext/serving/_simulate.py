"""Serving schedulers simulated one model iteration at a time.

Each iteration the scheduler picks what runs (prompt tokens to prefill, sequences to
decode), the cost model says how long that takes, and every sequence in it advances:
a request's first token appears when its whole prompt has been prefilled, then one
token per iteration it decodes in. KV memory is counted in tokens: reserved for the
whole request up front (``block=None``), or in blocks of ``block`` tokens as the
sequence grows (paged), with the newest request preempted when a block cannot be had:
its KV dropped and recomputed later, or swapped out to host memory and back.

The scheduling itself is the numba state machine in ``_engine`` (plan an iteration,
run it, advance), shared with the real executor in ``_serve``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from . import _engine as engine
from ._metrics import metric_columns, summarize
from ._workload import Workload

_NO_LIMIT = 1 << 60  # a KV budget of None


@dataclass(frozen=True)
class CostModel:
    """Seconds for one iteration: a fixed overhead plus a roofline, the larger of the
    compute time (tokens through the weights, and attention: each new token against
    every earlier token of its sequence) and the memory time (weights and KV read),
    plus the time to move swapped KV between device and host."""

    overhead: float = 0.002
    per_token: float = 5e-5  # compute seconds per prefill token or decoded sequence
    per_pair: float = 2e-9  # compute seconds per (new token, earlier token) attention pair
    weights: float = 0.006  # seconds to read the weights once
    per_kv_token: float = 2e-7  # seconds to read one token's keys and values
    per_swap_token: float = 1e-6  # seconds to move one token's keys and values to or from the host

    def __post_init__(self):
        for name in _COST_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value)
                                               and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0 seconds, got {value!r}")

    def iteration(self, prefill_tokens: int, decode_seqs: int, attention_pairs: int, kv_read: int,
                  swap_tokens: int = 0) -> float:
        """Seconds for one iteration with these totals (the columns of a timeline)."""
        return float(engine.iteration_seconds(self._array(), prefill_tokens, decode_seqs, attention_pairs, kv_read,
                                              swap_tokens))

    def _array(self) -> np.ndarray:
        return np.array([getattr(self, name) for name in _COST_FIELDS])

    @classmethod
    def fit(cls, timeline: pd.DataFrame) -> "CostModel":
        """The parameters that best explain measured iteration times (a ``timeline`` from
        ``serve``), by least squares on the seconds, so the fitted iterations add up to the
        measured time. ``per_swap_token`` is fitted only when the timeline swapped."""
        needed = {"start", "end", "prefill_tokens", "decode_seqs", "attention_pairs", "kv_read", "swap_tokens"}
        missing = needed - set(timeline.columns)
        if missing:
            raise ValueError(f"timeline lacks column(s) {', '.join(sorted(missing))}")
        if len(timeline) < len(_COST_FIELDS):
            raise ValueError(f"fitting needs at least {len(_COST_FIELDS)} iterations, got {len(timeline)}")
        seconds = (timeline.end - timeline.start).to_numpy()
        columns = [timeline[name].to_numpy(dtype=np.float64) for name in
                   ("prefill_tokens", "decode_seqs", "attention_pairs", "kv_read", "swap_tokens")]
        tokens, pairs, kv, swap = columns[0] + columns[1], columns[2], columns[3], columns[4]
        # fitted in units of the typical iteration, so every parameter is of order one
        scale = float(np.median(seconds))
        units = np.array([1.0, max(tokens.mean(), 1.0), max(pairs.mean(), 1.0), 1.0, max(kv.mean(), 1.0),
                          max(swap.mean(), 1.0)])

        def residuals(p):
            p = p / units
            compute = p[1] * tokens + p[2] * pairs
            memory = p[3] + p[4] * kv
            return p[0] + np.maximum(compute, memory) + p[5] * swap - seconds / scale

        best = least_squares(residuals, np.full(6, 0.25), bounds=(0.0, np.inf))
        fitted = best.x / units * scale
        if not swap.any():
            fitted[5] = cls.per_swap_token
        return cls(*(float(value) for value in fitted))


_COST_FIELDS = ("overhead", "per_token", "per_pair", "weights", "per_kv_token", "per_swap_token")


class _Scheduler:
    """What all schedulers share: the knobs every one has, and KV accounting."""

    wait = 0.0

    def __init__(self, max_seqs: int, kv_tokens: int | None, block: int | None, max_output: int):
        for name, value in (("max_seqs", max_seqs), ("kv_tokens", kv_tokens), ("block", block),
                            ("max_output", max_output)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.max_seqs, self.kv_tokens, self.block, self.max_output = max_seqs, kv_tokens, block, max_output

    def kv_need(self, prompt, tokens):
        """KV tokens a request with ``prompt`` tokens holds for ``tokens`` of context: whole
        blocks, or (reservation) the most it could ever need, its prompt plus ``max_output``:
        a scheduler cannot know in advance how many tokens a request will generate."""
        if self.block is None:
            return prompt + self.max_output
        return -(-tokens // self.block) * self.block

    def _params(self) -> np.ndarray:
        params = np.zeros(engine.P_FIELDS, np.int64)
        params[engine.STATIC] = not isinstance(self, ContinuousBatcher)
        params[engine.MAX_SEQS] = self.max_seqs
        params[engine.KV_BUDGET] = _NO_LIMIT if self.kv_tokens is None else self.kv_tokens
        params[engine.BLOCK] = self.block or 0
        params[engine.MAX_OUTPUT] = self.max_output
        return params

    def _check_fits(self, workload: Workload) -> None:
        too_long = np.flatnonzero(workload.output > self.max_output)
        if too_long.size:
            i = too_long[0]
            raise ValueError(f"request {i} asks for {workload.output[i]} tokens, more than max_output="
                             f"{self.max_output}")
        if self.kv_tokens is not None:
            need = self.kv_need(workload.prompt, workload.prompt + workload.output)
            too_big = np.flatnonzero(need > self.kv_tokens)
            if too_big.size:
                i = too_big[0]
                raise ValueError(f"request {i} needs {need[i]} KV tokens, more than kv_tokens={self.kv_tokens}")

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({settings})"


class StaticBatcher(_Scheduler):
    """Request-level batching: up to ``max_seqs`` waiting requests start together and the
    batch runs until its last request finishes; finished requests keep their slots and are
    computed as padding. KV is reserved per request (prompt + ``max_output``)."""

    def __init__(self, max_seqs: int = 32, kv_tokens: int | None = None, max_output: int = 1024):
        super().__init__(max_seqs, kv_tokens, None, max_output)


class DynamicBatcher(StaticBatcher):
    """Static batches that start when ``max_seqs`` requests wait or the oldest has waited
    ``max_wait`` seconds (Triton's and Ray Serve's dynamic batching)."""

    def __init__(self, max_seqs: int = 32, max_wait: float = 0.01, kv_tokens: int | None = None,
                 max_output: int = 1024):
        super().__init__(max_seqs, kv_tokens, max_output)
        if isinstance(max_wait, bool) or not isinstance(max_wait, (int, float)) or not max_wait >= 0:
            raise ValueError(f"max_wait must be >= 0 seconds, got {max_wait!r}")
        self.wait = float(max_wait)


class ContinuousBatcher(_Scheduler):
    """Iteration-level batching (Orca): every iteration, running sequences decode one
    token and waiting requests join while ``max_seqs``, the ``max_tokens`` budget and KV
    memory allow. With ``chunk``, prompts are prefilled in chunks of at most that many
    tokens after the decodes (stall-free chunked prefill, as Sarathi-Serve). When KV runs
    out the newest running request is preempted: ``preempt="recompute"`` drops its KV
    (it prefills prompt and output so far again), ``"swap"`` moves it to host memory."""

    def __init__(self, max_seqs: int = 64, max_tokens: int = 2048, chunk: int | None = None,
                 kv_tokens: int | None = None, block: int | None = 16, preempt: str = "recompute",
                 max_output: int = 1024):
        super().__init__(max_seqs, kv_tokens, block, max_output)
        for name, value in (("max_tokens", max_tokens), ("chunk", chunk)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if preempt not in ("recompute", "swap"):
            raise ValueError(f"preempt must be 'recompute' or 'swap', got {preempt!r}")
        self.max_tokens, self.chunk, self.preempt = max_tokens, chunk, preempt

    def _params(self) -> np.ndarray:
        params = super()._params()
        params[engine.MAX_TOKENS] = self.max_tokens
        params[engine.CHUNK] = self.chunk or 0
        params[engine.SWAP] = self.preempt == "swap"
        return params

    def _check_fits(self, workload: Workload) -> None:
        super()._check_fits(workload)
        if self.chunk is None:
            too_long = np.flatnonzero(workload.prompt > self.max_tokens)
            if too_long.size:
                i = too_long[0]
                raise ValueError(f"request {i}'s prompt of {workload.prompt[i]} tokens exceeds max_tokens="
                                 f"{self.max_tokens}: set chunk to prefill it in pieces")


@dataclass
class SimulationResult:
    """``requests``: one row per request (id, arrival, first_token, finish, prompt, output,
    ttft, tpot, e2e, preemptions); ``timeline``: one row per iteration (start, end,
    prefill_tokens, decode_seqs, attention_pairs: (new token, earlier token) pairs its
    attention scores, kv_read: tokens of KV the iteration reads, kv_tokens:
    KV tokens held, blocks and reservations included, preempted: requests preempted while
    planning it, swap_tokens: KV tokens moved to or from the host); ``outputs`` (from
    ``serve`` only): each request's generated token ids."""

    requests: pd.DataFrame
    timeline: pd.DataFrame = field(repr=False)
    outputs: list | None = field(default=None, repr=False)

    def summary(self, slo: dict | None = None) -> pd.Series:
        return summarize(self.requests, slo)

    def inter_token_latencies(self) -> np.ndarray:
        """Gaps between a sequence's consecutive tokens, one per decoded token: a decoding
        sequence runs in every iteration, so each gap is the iteration that made the token
        (a static batch's finished members, decoded as padding, are counted too)."""
        seconds = (self.timeline.end - self.timeline.start).to_numpy()
        return np.repeat(seconds, self.timeline.decode_seqs.to_numpy())


def _check(workload, scheduler) -> None:
    if not isinstance(workload, Workload):
        raise TypeError(f"workload must be a Workload, got {type(workload).__name__}")
    if not isinstance(scheduler, _Scheduler):
        raise TypeError(f"scheduler must be a StaticBatcher, DynamicBatcher or ContinuousBatcher, "
                        f"got {type(scheduler).__name__}")
    if len(workload) == 0:
        raise ValueError("the workload has no requests")
    scheduler._check_fits(workload)


def _result(workload: Workload, req: np.ndarray, times: np.ndarray, timeline: np.ndarray) -> SimulationResult:
    metrics = metric_columns(workload.arrival, times[:, engine.FIRST_TOKEN], times[:, engine.FINISH],
                             workload.output)
    # built from whole columns at once: inserting columns one by one cost more than the simulation
    columns = {"id": np.arange(len(workload)), "arrival": metrics["arrival"], "first_token": metrics["first_token"],
               "finish": metrics["finish"], "prompt": workload.prompt,
               **{name: metrics[name] for name in ("output", "ttft", "tpot", "e2e")},
               "preemptions": req[:, engine.PREEMPTIONS]}
    steps = {name: timeline[:, i] if i < 2 else timeline[:, i].astype(np.int64)
             for i, name in enumerate(engine.TIMELINE_COLUMNS)}
    return SimulationResult(pd.DataFrame(columns), pd.DataFrame(steps))


def simulate(workload: Workload, scheduler, cost: CostModel | None = None) -> SimulationResult:
    """Serve every request of ``workload`` with ``scheduler``, each iteration taking the
    time ``cost`` (default ``CostModel()``) gives it."""
    _check(workload, scheduler)
    cost = cost or CostModel()
    if not isinstance(cost, CostModel):
        raise TypeError(f"cost must be a CostModel, got {type(cost).__name__}")
    req, times, timeline = engine.run(workload.arrival, workload.prompt, workload.output, scheduler._params(),
                                      scheduler.wait, cost._array())
    return _result(workload, req, times, timeline)
