"""The ``%cms`` panel: a Count-Min sketch fed a Zipf stream for real; its overestimates
beside the eps*N bound, and how often the bound is broken beside delta."""
from __future__ import annotations

import time
from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np

from ..sketches import CountMinSketch
from ._lab_panel import LabPanel, check_ranges, checkbox, slider
from ._plots import new_figure, png_of

# what the sliders show, and what %cms accepts
RANGES = {"eps": (1e-4, 0.1), "delta": (1e-4, 10**-0.5), "length": (10_000, 2_000_000), "skew": (1.05, 2.5)}


@dataclass
class CountMinMeasurement:
    sketch: CountMinSketch
    errors: np.ndarray  # estimate - true count, one per distinct key
    bound: float  # eps * N
    broken: float  # fraction of distinct keys whose error exceeds the bound
    add_rate: float  # stream items/s
    estimate_rate: float  # keys/s


def zipf_stream(length: int, skew: float, seed: int = 0) -> np.ndarray:
    """``length`` keys drawn from a Zipf law of exponent ``skew`` (> 1)."""
    return np.random.default_rng(seed).zipf(skew, size=length).astype(np.uint64)


def measure_countmin(eps: float, delta: float, length: int, skew: float, conservative: bool,
                     seed: int = 0) -> CountMinMeasurement:
    stream = zipf_stream(length, skew, seed)
    keys, true_counts = np.unique(stream, return_counts=True)
    sketch = CountMinSketch(eps, delta, seed=seed, conservative=conservative)
    start = time.perf_counter()
    sketch.add_many(stream)
    add_seconds = time.perf_counter() - start
    start = time.perf_counter()
    estimates = sketch.estimate_many(keys)
    estimate_seconds = time.perf_counter() - start
    errors = estimates - true_counts
    bound = sketch.error_bound()
    return CountMinMeasurement(sketch, errors, bound, float((errors > bound).mean()),
                               length / add_seconds, len(keys) / estimate_seconds)


def draw_countmin(m: CountMinMeasurement) -> tuple[bytes, str]:
    fig = new_figure()
    ax = fig.add_subplot()
    top = max(float(m.errors.max()), m.bound) * 1.05 + 1
    ax.hist(m.errors, bins=60, range=(0, top), color="#1f77b4", label="overestimate per distinct key")
    ax.axvline(m.bound, color="#d62728", ls="--", label=f"bound eps N = {m.bound:,.0f}")
    ax.set_yscale("log")
    ax.set_xlabel("estimate - true count")
    ax.set_ylabel("keys")
    ax.legend(fontsize=7, frameon=False)
    s = m.sketch
    verdict = "within" if m.broken <= s.delta else "over"
    summary = (
        f"<table><tr><td>w = {s.width:,}, d = {s.depth}, {'conservative' if s.conservative else 'plain'} update"
        f"</td><td>&nbsp; N = {s.total:,}, {len(m.errors):,} distinct keys</td></tr>"
        f"<tr><td>keys over the bound: {100 * m.broken:.3f}% (theory: at most delta = {100 * s.delta:g}%, "
        f"{verdict})</td><td>&nbsp; never under: min error {int(m.errors.min())}</td></tr>"
        f"<tr><td>add {m.add_rate / 1e6:.1f} M items/s</td><td>&nbsp; estimate {m.estimate_rate / 1e6:.1f} M keys/s"
        f"</td></tr></table>"
    )
    return png_of(fig), summary


class CountMinPanel(LabPanel):
    """Sliders for eps, delta, the stream length and the Zipf skew, and the update rule."""

    def __init__(self, eps: float = 0.001, delta: float = 0.01, length: int = 200_000, skew: float = 1.2,
                 conservative: bool = False):
        check_ranges(RANGES, eps=eps, delta=delta, length=length, skew=skew)
        controls = {
            "eps": slider(widgets.FloatLogSlider, "eps", RANGES["eps"], value=eps, step=0.1, readout_format=".2g"),
            "delta": slider(widgets.FloatLogSlider, "delta", RANGES["delta"], value=delta, step=0.1,
                            readout_format=".2g"),
            "length": slider(widgets.IntSlider, "stream N", RANGES["length"], value=length, step=10_000),
            "skew": slider(widgets.FloatSlider, "Zipf skew", RANGES["skew"], value=skew, step=0.05),
            "conservative": checkbox("conservative update", conservative),
        }
        super().__init__("Count-Min sketch: overestimates against the eps N bound", controls)

    def measure(self, eps, delta, length, skew, conservative):
        return measure_countmin(eps, delta, length, skew, conservative)

    def draw(self, result):
        return draw_countmin(result)
