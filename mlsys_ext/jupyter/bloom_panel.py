"""The ``%bloom`` panel: a Bloom filter filled for real, its measured false-positive
rate beside the textbook formula and the exact expectation."""
from __future__ import annotations

from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np

from ..sketches import BloomFilter
from ._lab_panel import LabPanel, best_seconds, check_ranges, checkbox, slider, toggles
from ._plots import panel_axes, plain_log_scale, png_of

RANGES = {"n": (100, 1_000_000), "p": (1e-4, 10**-0.5)}  # what the sliders show, and what %bloom accepts
FILL_POINTS = 15
MAX_FILL = 1.5  # the curves go on past capacity, where the rate climbs
QUERIES = 20_000
_ABSENT_BASE = 1 << 62  # absent keys: a range no present key reaches


@dataclass
class BloomMeasurement:
    filter: BloomFilter
    added: np.ndarray  # keys in the filter at each fill point
    measured: np.ndarray  # false positives / QUERIES at each fill point
    classic: np.ndarray
    exact: np.ndarray
    add_rate: float  # keys/s
    query_rate: float  # keys/s


def measure_bloom(bf: BloomFilter, queries: int = QUERIES) -> BloomMeasurement:
    """Fill the empty filter ``bf`` up to 1.5 times its capacity, measuring its
    false-positive rate on ``queries`` absent keys at each fill point; then time adding
    every key to an empty filter of its shape, and querying the absent keys in the full one
    (each the best of a few runs: warm the kernels up first)."""
    n = bf.capacity
    added = np.unique(np.linspace(0, MAX_FILL * n, FILL_POINTS + 1)[1:].astype(np.int64))
    absent = np.arange(_ABSENT_BASE, _ABSENT_BASE + queries, dtype=np.uint64)
    keys = np.arange(added[-1], dtype=np.uint64)
    measured = np.empty(len(added))
    done = 0
    for i, upto in enumerate(added):
        bf.add_many(keys[done:upto])
        done = upto
        measured[i] = bf.contains_many(absent).mean()
    add_seconds = best_seconds(
        lambda: BloomFilter.with_shape(bf.num_bits, bf.num_hashes, n, bf.kind).add_many(keys), repeats=3, budget=0.02)
    query_seconds = best_seconds(lambda: bf.contains_many(absent), repeats=3, budget=0.01)
    return BloomMeasurement(bf, added, measured, bf.fpr_classic(added), bf.fpr_exact(added),
                            len(keys) / add_seconds, queries / query_seconds)


def draw_bloom(m: BloomMeasurement, figure=None, queries: int = QUERIES) -> tuple[bytes, str, object]:
    """PNG, summary and the figure, which the next drawing can reuse (see ``panel_axes``)."""
    bf = m.filter
    fill = m.added / bf.capacity
    fig, (ax,) = panel_axes(figure, 1, 6.0, 2.6, left=0.12, right=0.98, bottom=0.2, top=0.95)
    # 95% binomial interval of each measurement, floored so the log axis shows zero counts
    spread = 1.96 * np.sqrt(np.maximum(m.exact * (1 - m.exact), 1e-12) / queries)
    seen = m.measured > 0
    ax.errorbar(fill[seen], m.measured[seen], yerr=spread[seen], fmt="o", ms=4,
                color="#1f77b4", label=f"measured ({queries:,} absent keys)")
    if not seen.all():  # no false positive among the queries: below 1/queries, drawn on that floor
        ax.plot(fill[~seen], np.full((~seen).sum(), 1 / queries), "v", mfc="none", color="#1f77b4",
                label=f"none in {queries:,}")
    ax.plot(fill, m.exact, color="#2ca02c", label="exact: E[(X/m)^k]")
    ax.plot(fill, m.classic, "--", color="#d62728", label="classic: (1 - e^{-kn/m})^k")
    ax.axhline(bf.fpr, color="gray", lw=0.8, ls=":", label=f"target p = {bf.fpr:g}")
    ax.axvline(1.0, color="gray", lw=0.8)
    plain_log_scale(ax)
    ax.set_xlabel("keys added / capacity")
    ax.set_ylabel("false-positive rate")
    ax.legend(fontsize=7, frameon=False, loc="lower right")
    at_capacity = int(np.argmin(np.abs(m.added - bf.capacity)))
    gap = m.exact[at_capacity] / m.classic[at_capacity] - 1
    summary = (
        f"<table><tr><td>m = {bf.num_bits:,} bits, k = {bf.num_hashes}, {bf.kind}</td>"
        f"<td>&nbsp; {bf.bits_per_key:.2f} bits/key, {bf.memory_bytes / 1024:,.1f} KiB</td></tr>"
        f"<tr><td>at capacity: measured {m.measured[at_capacity]:.4g}, exact {m.exact[at_capacity]:.4g}, "
        f"classic {m.classic[at_capacity]:.4g}</td><td>&nbsp; exact is {100 * gap:+.1f}% over classic</td></tr>"
        f"<tr><td>add {m.add_rate / 1e6:.1f} M keys/s</td>"
        f"<td>&nbsp; query {m.query_rate / 1e6:.1f} M absent keys/s (full)"
        f"</td></tr></table>"
    )
    return png_of(fig), summary, fig


class BloomPanel(LabPanel):
    """Sliders for capacity n, target rate p and the kind, or m and k by hand; the filter
    is filled to 1.5 n and its measured rate drawn beside ``fpr_exact`` and
    ``fpr_classic``. At small m the two formulas part, and the measurement follows the
    exact one; away from the optimal k, both rise."""

    def __init__(self, n: int = 100_000, p: float = 0.01, kind: str = "classic"):
        check_ranges(RANGES, n=n, p=p)
        sized = BloomFilter(n, p, kind=kind)  # the core refuses the rest, with its message
        controls = {
            "n": slider(widgets.FloatLogSlider, "capacity n", RANGES["n"], value=n, step=0.1, readout_format=".3s"),
            "p": slider(widgets.FloatLogSlider, "target p", RANGES["p"], value=p, step=0.1, readout_format=".2g"),
            "kind": toggles("kind", ["classic", "blocked"], kind),
            "by_hand": checkbox("m and k by hand", False),
            "m": slider(widgets.FloatLogSlider, "m bits", value=sized.num_bits, base=2, min=8, max=26, step=0.25,
                        readout_format=".3s"),
            "k": slider(widgets.IntSlider, "k", value=sized.num_hashes, min=1, max=24),
        }
        super().__init__("Bloom filter: measured false-positive rate against theory", controls)
        for name in ("m", "k"):
            controls[name].observe(self._to_hand, names="value")

    def _to_hand(self, change) -> None:
        """A move of m or k means sizing by hand: the box ticks itself (not for ``show``'s values)."""
        if id(change["owner"]) not in self._shown:
            self.controls["by_hand"].value = True

    def measure(self, n, p, kind, by_hand, m, k):
        self.warm_up(kind, lambda: measure_bloom(BloomFilter(100, 0.01, kind), queries=10))
        n = max(int(round(n)), 1)
        if by_hand:
            return measure_bloom(BloomFilter.with_shape(int(round(m)), k, n, kind))
        result = measure_bloom(BloomFilter(n, p, kind))
        if not self.controls["by_hand"].value:  # what n and p chose, for sizing by hand to start from
            self.show(m=result.filter.num_bits, k=result.filter.num_hashes)
        return result

    def draw(self, result):
        png, summary, self.figure = draw_bloom(result, self.figure)
        return png, summary
