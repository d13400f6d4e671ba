"""The ``%cms`` panel: a Count-Min sketch fed a Zipf stream for real; its overestimates
beside the eps*N bound, and how often the bound is broken beside delta."""
from __future__ import annotations

from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np

from ..sketches import CountMinSketch
from ._lab_panel import LabPanel, best_seconds, check_ranges, checkbox, slider
from ._plots import panel_axes, plain_log_scale, png_of

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
    sketch.add_many(stream)
    estimates = sketch.estimate_many(keys)
    # rates: the best of a few runs, the adds each into an empty sketch
    add_seconds = best_seconds(
        lambda: CountMinSketch(eps, delta, seed=seed, conservative=conservative).add_many(stream), 3, budget=0.02)
    estimate_seconds = best_seconds(lambda: sketch.estimate_many(keys), 3, budget=0.01)
    errors = estimates - true_counts
    bound = sketch.error_bound()
    return CountMinMeasurement(sketch, errors, bound, float((errors > bound).mean()),
                               length / add_seconds, len(keys) / estimate_seconds)


def draw_countmin(m: CountMinMeasurement, figure=None) -> tuple[bytes, str, object]:
    """PNG, summary and the figure, which the next drawing can reuse (see ``panel_axes``)."""
    fig, (ax,) = panel_axes(figure, 1, 6.0, 2.6, left=0.12, right=0.98, bottom=0.2, top=0.95)
    top = max(float(m.errors.max()), m.bound) * 1.05 + 1
    counts, edges = np.histogram(m.errors, bins=60, range=(0, top))
    # one artist for the 60 bars (ax.hist draws a patch each: ~40 ms); empty bins at the log axis' floor
    ax.stairs(np.maximum(counts, 0.5), edges, baseline=0.5, fill=True, color="#1f77b4",
              label="overestimate per distinct key")
    ax.axvline(m.bound, color="#d62728", ls="--", label=f"bound eps N = {m.bound:,.0f}")
    plain_log_scale(ax)
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
    return png_of(fig), summary, fig


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
        self.warm_up(conservative, lambda: measure_countmin(0.1, 0.1, 10_000, skew, conservative))
        return measure_countmin(eps, delta, length, skew, conservative)

    def draw(self, result):
        png, summary, self.figure = draw_countmin(result, self.figure)
        return png, summary
