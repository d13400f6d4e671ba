"""The ``%sharding`` panel: a placement scheme spreading keys (uniform or Zipf, hot keys
salted or not) over its shards, load per shard beside the theory's spread, and the keys
each scheme moves when a shard is added or removed beside 1/(N+1) and 1/N."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import ipywidgets as widgets
import numpy as np

from ..distributed import (
    BoundedLoadConsistentHashing, ConsistentHashRing, JumpHash, MaglevHashing, ModuloSharding, RangeSharding,
    RendezvousHashing, hottest, keys_moved, load_balance, ring_load_cv, salt_keys, uniform_load_cv, zipf_keys,
)
from ._lab_panel import LabPanel, check_ranges, dropdown, slider
from ._plots import panel_axes, png_of

SCHEMES = {"ring": ConsistentHashRing, "bounded loads": BoundedLoadConsistentHashing, "jump": JumpHash,
           "rendezvous": RendezvousHashing, "maglev": MaglevHashing, "modulo": ModuloSharding, "range": RangeSharding}
WITH_VNODES = ("ring", "bounded loads")
# what the sliders show, and what %sharding accepts
RANGES = {"shards": (2, 64), "vnodes": (1, 1000), "skew": (0.0, 2.0), "salts": (1, 64), "keys": (10_000, 1_000_000)}
HOT_KEYS = 10  # the keys salted: the hottest of the stream
UNIVERSE = 1_000_000
SEED = 0


@dataclass
class ShardingMeasurement:
    scheme: str
    shards: int
    vnodes: int
    skew: float
    salts: int
    loads: np.ndarray  # keys on each shard, in shard-id order
    std_over_mean: float
    max_over_mean: float
    theory_cv: float  # the spread uniform keys would have under this scheme
    moved: dict  # "add"/"remove" -> (measured fraction, ideal)


def build(scheme: str, shards: int, vnodes: int):
    cls = SCHEMES[scheme]
    return cls(shards, vnodes=vnodes, seed=SEED) if scheme in WITH_VNODES else \
        cls(shards) if scheme == "range" else cls(shards, seed=SEED)


@lru_cache(maxsize=4)
def _keys(n_keys: int, skew: float, whole_key_space: bool) -> np.ndarray:
    """The workload, drawn once per setting (read-only): moves of the scheme, shards, vnodes
    and salts sliders reuse it."""
    if whole_key_space:
        keys = np.random.default_rng(SEED).integers(0, 2**64, n_keys, dtype=np.uint64, endpoint=False)
    else:
        keys = zipf_keys(n_keys, skew, UNIVERSE, seed=SEED)
    keys.flags.writeable = False
    return keys


def measure_sharding(scheme: str, shards: int, vnodes: int, skew: float, salts: int, n_keys: int) -> ShardingMeasurement:
    """Place ``n_keys`` keys (Zipf of exponent ``skew`` over a million ranks; 0 is uniform,
    and for range sharding uniform over the whole key space), the HOT_KEYS hottest salted
    into ``salts`` sub-keys each (1: not salted), and move a shard in and out."""
    placement = build(scheme, shards, vnodes)
    keys = _keys(n_keys, skew, skew == 0 and scheme == "range")
    if salts > 1:
        keys = salt_keys(keys, hottest(keys, HOT_KEYS), salts, seed=SEED)
    loads = np.bincount(np.searchsorted(placement.shards, placement.place(keys)), minlength=shards)
    balance = load_balance(placement, keys)
    theory = ring_load_cv(shards, vnodes, n_keys) if scheme in WITH_VNODES else uniform_load_cv(shards, n_keys)
    moved = {change: keys_moved(placement, keys, change) for change in ("add", "remove")}
    return ShardingMeasurement(scheme, shards, vnodes, skew, salts, loads, balance.std_over_mean,
                               balance.max_over_mean, theory,
                               {change: (m.moved, m.ideal) for change, m in moved.items()})


def draw_sharding(m: ShardingMeasurement, figure=None) -> tuple[bytes, str, object]:
    """PNG, summary and the figure, which the next drawing can reuse (see ``panel_axes``)."""
    fig, (loads, moved) = panel_axes(figure, 2, 9.0, 2.6, left=0.07, right=0.99, bottom=0.2, top=0.9, wspace=0.3)
    mean = m.loads.mean()
    loads.bar(np.arange(m.shards), m.loads / mean, width=0.85, color="#1f77b4", label="measured")
    loads.axhline(1.0, color="gray", lw=0.8, label="mean")
    if m.skew == 0:  # the theory's band holds for uniform keys only
        loads.axhspan(1 - m.theory_cv, 1 + m.theory_cv, color="#2ca02c", alpha=0.2,
                      label=f"theory: mean ± {m.theory_cv:.3f} (1 std)")
    loads.set_xlabel("shard")
    loads.set_ylabel("keys / mean")
    loads.set_title(f"{m.scheme}, {m.shards} shards" + (f", {m.vnodes} vnodes" if m.scheme in WITH_VNODES else "")
                    + (f", Zipf {m.skew:g}" if m.skew else ", uniform keys")
                    + (f", {HOT_KEYS} hottest salted x{m.salts}" if m.salts > 1 else ""), fontsize=8)
    loads.set_ylim(0, 1.35 * max(1.0 + m.theory_cv, m.loads.max() / mean))  # room for the legend above the bars
    loads.legend(fontsize=6, frameon=False, loc="upper right", ncol=3)
    changes = ["add", "remove"]
    measured = [m.moved[c][0] for c in changes]
    ideal = [m.moved[c][1] for c in changes]
    x = np.arange(len(changes))
    moved.bar(x - 0.2, measured, width=0.4, color="#1f77b4", label="measured")
    moved.bar(x + 0.2, ideal, width=0.4, color="#2ca02c", label="ideal: 1/(N+1), 1/N")
    moved.set_xticks(x, [f"add shard {m.shards}", "remove a shard"])
    moved.set_ylim(0, 1.3 * max(measured + ideal))  # room for the legend above the bars
    moved.set_ylabel("fraction of keys moved")
    moved.set_title("keys moved on a resize", fontsize=8)
    moved.legend(fontsize=6, frameon=False, loc="upper left")
    summary = (f"<table><tr><td>load std/mean {m.std_over_mean:.4f}</td>"
               f"<td>&nbsp; theory for uniform keys {m.theory_cv:.4f}</td>"
               f"<td>&nbsp; max/mean {m.max_over_mean:.3f}</td></tr>"
               f"<tr><td>moved on add {m.moved['add'][0]:.4f}</td><td>&nbsp; ideal {m.moved['add'][1]:.4f}</td>"
               f"<td>&nbsp; on remove {m.moved['remove'][0]:.4f} (ideal {m.moved['remove'][1]:.4f})</td></tr>"
               "</table>")
    return png_of(fig), summary, fig


class ShardingPanel(LabPanel):
    """A scheme, its shards and virtual nodes, the keys' skew and the salting of hot keys;
    each change places the keys again and moves a shard in and out."""

    def __init__(self, scheme: str = "ring", shards: int = 10, vnodes: int = 100, skew: float = 0.0,
                 salts: int = 1, keys: int = 200_000):
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
        check_ranges(RANGES, shards=shards, vnodes=vnodes, skew=skew, salts=salts, keys=keys)
        controls = {
            "scheme": dropdown("scheme", list(SCHEMES), scheme),
            "shards": slider(widgets.IntSlider, "shards", RANGES["shards"], value=shards),
            "vnodes": slider(widgets.IntSlider, "vnodes", RANGES["vnodes"], value=vnodes),
            "skew": slider(widgets.FloatSlider, "Zipf skew", RANGES["skew"], value=skew, step=0.05),
            "salts": slider(widgets.IntSlider, "hot-key salts", RANGES["salts"], value=salts),
            "n_keys": slider(widgets.IntSlider, "keys", RANGES["keys"], value=keys, step=10_000),
        }
        super().__init__("Sharding: load per shard and keys moved on a resize", controls)

    def measure(self, scheme, shards, vnodes, skew, salts, n_keys):
        self.warm_up("sharding", lambda: [measure_sharding(name, 2, 2, 0.5, 2, 1_000) for name in SCHEMES])
        return measure_sharding(scheme, shards, vnodes, skew, salts, n_keys)

    def draw(self, result):
        png, summary, self.figure = draw_sharding(result, self.figure)
        return png, summary
