"""Capacity: the highest arrival rate a scheduler serves while enough requests meet their SLOs."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from numbers import Real

import pandas as pd

from ._metrics import SLO_METRICS
from ._simulate import CostModel, simulate
from ._workload import Workload


@dataclass
class Capacity:
    """``rate``: the highest requests/s found whose SLO attainment reaches the target (0.0
    when even the lowest rate tried misses it); ``probes``: every rate simulated, with its
    attainment, goodput, throughput and latency percentiles, sorted by rate."""

    rate: float
    attainment: float
    probes: pd.DataFrame = field(repr=False)


def capacity(workload: Workload, scheduler, slo: dict, attainment: float = 0.9, cost: CostModel | None = None,
             tolerance: float = 0.05, max_probes: int = 40) -> Capacity:
    """Search the arrival rate (``workload`` replayed at other rates by ``Workload.at_rate``)
    for the highest one at which a share ``attainment`` of requests meets every SLO in
    ``slo``: double or halve from the workload's own rate until the target is bracketed,
    then bisect (geometrically) until the bracket is within ``tolerance``."""
    if not slo or set(slo) - set(SLO_METRICS):
        raise ValueError(f"slo must set at least one of {', '.join(SLO_METRICS)}, got {slo!r}")
    if isinstance(attainment, bool) or not isinstance(attainment, Real) or not 0 < attainment <= 1:
        raise ValueError(f"attainment must be a share in (0, 1], got {attainment!r}")
    if isinstance(tolerance, bool) or not isinstance(tolerance, Real) or not tolerance > 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance!r}")
    rows = []

    def meets(rate: float) -> bool:
        summary = simulate(workload.at_rate(rate), scheduler, cost).summary(slo)
        rows.append({"rate": rate, **summary.drop(["requests", "duration"]).to_dict()})
        return summary.slo_attainment >= attainment

    low = high = workload.describe()["rate"]
    if not math.isfinite(low):
        raise ValueError("the workload needs two requests at different times to have a rate")
    if meets(low):
        high = low * 2
        while meets(high):
            if len(rows) >= max_probes:
                raise RuntimeError(f"the target is still met at {high:.4g} requests/s after {max_probes} "
                                   f"simulations: the SLOs may not bind")
            low, high = high, high * 2
    else:
        low = high / 2
        while not meets(low) and len(rows) < max_probes:
            low, high = low / 2, low
    while high / low > 1 + tolerance and len(rows) < max_probes:
        middle = math.sqrt(low * high)
        if meets(middle):
            low = middle
        else:
            high = middle
    probes = pd.DataFrame(rows).sort_values("rate", ignore_index=True)
    met = probes[probes.slo_attainment >= attainment]
    best = met.iloc[-1] if len(met) else None
    return Capacity(float(best.rate) if best is not None else 0.0,
                    float(best.slo_attainment) if best is not None else float("nan"), probes)
