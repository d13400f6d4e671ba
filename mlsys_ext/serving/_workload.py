"""Serving workloads: when requests arrive, how long their prompts are, how many tokens
they ask for. Synthetic (Poisson or Gamma arrivals, length distributions) or read from
a trace file of the form ``arrived_at,num_prefill_tokens,num_decode_tokens``."""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import pandas as pd

TRACE_COLUMNS = ("arrived_at", "num_prefill_tokens", "num_decode_tokens")


@dataclass(frozen=True)
class Lengths:
    """A distribution of token counts, at least ``low`` and at most ``high``.

    Build one with ``fixed``, ``uniform``, ``exponential``, ``zipf`` or ``empirical``.
    """

    kind: str
    params: tuple
    low: int = 1
    high: int = 1 << 20

    @classmethod
    def fixed(cls, tokens: int) -> "Lengths":
        tokens = _positive_int("tokens", tokens)
        return cls("fixed", (tokens,), tokens, tokens)

    @classmethod
    def uniform(cls, low: int, high: int) -> "Lengths":
        low, high = _positive_int("low", low), _positive_int("high", high)
        if low > high:
            raise ValueError(f"uniform lengths need low <= high, got {low} > {high}")
        return cls("uniform", (low, high), low, high)

    @classmethod
    def exponential(cls, mean: float, low: int = 1, high: int = 1 << 20) -> "Lengths":
        """Geometric counts with mean about ``mean`` (the discrete exponential), clipped to [low, high]."""
        if isinstance(mean, bool) or not isinstance(mean, Real) or not mean >= 1:
            raise ValueError(f"mean must be a number >= 1, got {mean!r}")
        return cls("exponential", (float(mean),), _positive_int("low", low), _positive_int("high", high))

    @classmethod
    def zipf(cls, exponent: float, high: int, low: int = 1) -> "Lengths":
        """P(k) proportional to k^-exponent on [low, high]: most short, a heavy tail of long ones."""
        if isinstance(exponent, bool) or not isinstance(exponent, Real) or not exponent > 0:
            raise ValueError(f"exponent must be a number > 0, got {exponent!r}")
        low, high = _positive_int("low", low), _positive_int("high", high)
        if low > high:
            raise ValueError(f"zipf lengths need low <= high, got {low} > {high}")
        return cls("zipf", (float(exponent),), low, high)

    @classmethod
    def empirical(cls, values) -> "Lengths":
        """Draws (with replacement) from observed counts, e.g. a trace's column."""
        values = np.asarray(values)
        if values.ndim != 1 or values.size == 0 or values.dtype.kind not in "iu" or values.min() < 1:
            raise ValueError("empirical lengths need a non-empty 1-D array of positive integers")
        return cls("empirical", (tuple(int(v) for v in values),), int(values.min()), int(values.max()))

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        kind, params = self.kind, self.params
        if kind == "fixed":
            drawn = np.full(n, params[0])
        elif kind == "uniform":
            drawn = rng.integers(params[0], params[1] + 1, size=n)
        elif kind == "exponential":
            drawn = rng.geometric(1.0 / params[0], size=n)
        elif kind == "zipf":
            support = np.arange(self.low, self.high + 1)
            weights = support.astype(np.float64) ** -params[0]
            drawn = rng.choice(support, size=n, p=weights / weights.sum())
        else:
            drawn = rng.choice(np.asarray(params[0]), size=n)
        return np.clip(drawn, self.low, self.high).astype(np.int64)

    def mean(self) -> float:
        """The distribution's mean (before clipping, for exponential)."""
        kind, params = self.kind, self.params
        if kind == "fixed":
            return float(params[0])
        if kind == "uniform":
            return (params[0] + params[1]) / 2
        if kind == "exponential":
            return params[0]
        if kind == "zipf":
            support = np.arange(self.low, self.high + 1, dtype=np.float64)
            weights = support ** -params[0]
            return float((support * weights).sum() / weights.sum())
        return float(np.mean(params[0]))


@dataclass(frozen=True)
class Workload:
    """Requests sorted by arrival: ``arrival`` seconds, ``prompt`` and ``output`` tokens (numpy arrays)."""

    arrival: np.ndarray
    prompt: np.ndarray
    output: np.ndarray

    def __post_init__(self):
        arrays = [np.asarray(a) for a in (self.arrival, self.prompt, self.output)]
        if len({a.shape for a in arrays}) != 1 or arrays[0].ndim != 1:
            raise ValueError("arrival, prompt and output must be 1-D arrays of one length")
        arrival, prompt, output = arrays
        if arrival.size and (not np.isfinite(arrival).all() or (np.diff(arrival) < 0).any() or arrival[0] < 0):
            raise ValueError("arrival times must be finite, >= 0 and sorted")
        for name, tokens in (("prompt", prompt), ("output", output)):
            if tokens.size and (tokens.dtype.kind not in "iu" or tokens.min() < 1):
                raise ValueError(f"{name} token counts must be integers >= 1")
        object.__setattr__(self, "arrival", arrival.astype(np.float64))
        object.__setattr__(self, "prompt", prompt.astype(np.int64))
        object.__setattr__(self, "output", output.astype(np.int64))

    def __len__(self) -> int:
        return self.arrival.size

    @classmethod
    def poisson(cls, rate: float, n: int, prompt: Lengths, output: Lengths, seed=None) -> "Workload":
        """``n`` requests at ``rate`` per second on average, exponential gaps (CV 1)."""
        return cls.gamma(rate, 1.0, n, prompt, output, seed)

    @classmethod
    def gamma(cls, rate: float, cv: float, n: int, prompt: Lengths, output: Lengths, seed=None) -> "Workload":
        """``n`` requests at ``rate`` per second on average, Gamma gaps with coefficient of
        variation ``cv`` (1: Poisson; above 1: bursty; below 1: regular)."""
        if isinstance(rate, bool) or not isinstance(rate, Real) or not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"rate must be a positive number of requests per second, got {rate!r}")
        if isinstance(cv, bool) or not isinstance(cv, Real) or not (math.isfinite(cv) and cv > 0):
            raise ValueError(f"cv must be a positive number, got {cv!r}")
        n = _positive_int("n", n)
        for name, lengths in (("prompt", prompt), ("output", output)):
            if not isinstance(lengths, Lengths):
                raise TypeError(f"{name} must be a Lengths (e.g. Lengths.fixed(128)), got {type(lengths).__name__}")
        rng = np.random.default_rng(seed)
        shape = 1.0 / cv**2  # Gamma(k, theta) has CV 1/sqrt(k); mean k theta = 1/rate
        gaps = rng.gamma(shape, 1.0 / (rate * shape), size=n)
        return cls(np.cumsum(gaps) - gaps[0], prompt.sample(rng, n), output.sample(rng, n))

    @classmethod
    def from_trace(cls, path, limit: int | None = None) -> "Workload":
        """Read a CSV of ``arrived_at,num_prefill_tokens,num_decode_tokens`` (seconds, tokens);
        arrivals are shifted to start at 0. ``limit``: the first that many requests."""
        path = Path(path)
        frame = pd.read_csv(path, nrows=limit)
        missing = [column for column in TRACE_COLUMNS if column not in frame.columns]
        if missing:
            raise ValueError(f"{path.name}: missing column(s) {', '.join(missing)}; "
                             f"a trace needs {', '.join(TRACE_COLUMNS)}")
        frame = frame.sort_values("arrived_at", kind="stable")
        arrival = frame.arrived_at.to_numpy(dtype=np.float64)
        return cls(arrival - arrival[0] if arrival.size else arrival,
                   frame.num_prefill_tokens.to_numpy(), frame.num_decode_tokens.to_numpy())

    def at_rate(self, rate: float) -> "Workload":
        """The same requests with arrival times stretched or squeezed to a mean of ``rate``
        per second: the gaps keep their shape (and burstiness), the lengths are unchanged."""
        if isinstance(rate, bool) or not isinstance(rate, Real) or not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"rate must be a positive number of requests per second, got {rate!r}")
        current = self.describe()["rate"]
        if not math.isfinite(current):
            raise ValueError("a workload needs two requests at different times to have a rate")
        return Workload(self.arrival * (current / rate), self.prompt, self.output)

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"arrival": self.arrival, "prompt": self.prompt, "output": self.output})

    def describe(self) -> dict:
        """Rate, burstiness (CV of the gaps) and token means: what sizes a serving system."""
        gaps = np.diff(self.arrival)
        span = self.arrival[-1] - self.arrival[0] if len(self) > 1 else 0.0
        return {"requests": len(self), "rate": (len(self) - 1) / span if span > 0 else float("nan"),
                "cv": float(gaps.std() / gaps.mean()) if gaps.size and gaps.mean() > 0 else float("nan"),
                "prompt_mean": float(self.prompt.mean()), "output_mean": float(self.output.mean())}


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
