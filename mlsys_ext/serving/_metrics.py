"""Serving metrics as the serving benchmarks define them (vLLM's benchmark_serving):

- TTFT = first token - arrival; e2e = last token - arrival;
- TPOT = (e2e - TTFT) / (output tokens - 1), undefined for one-token outputs;
- inter-token latencies: the gaps between a request's consecutive tokens;
- throughput = finished requests / duration, and output tokens / duration, where the
  duration runs from the first arrival to the last finish;
- goodput = requests that met every SLO / duration.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

SLO_METRICS = ("ttft", "tpot", "e2e")
PERCENTILES = (50, 90, 99)


def request_metrics(arrival, first_token, finish, output) -> pd.DataFrame:
    """Per request: arrival, first_token, finish, output, ttft, tpot (NaN for one token), e2e."""
    return pd.DataFrame(metric_columns(arrival, first_token, finish, output))


def metric_columns(arrival, first_token, finish, output) -> dict[str, np.ndarray]:
    """``request_metrics``'s columns as arrays, for a caller building a frame of its own
    (a frame built only to be taken apart costs more than a small simulation)."""
    arrival, first_token, finish = (np.asarray(a, dtype=np.float64) for a in (arrival, first_token, finish))
    output = np.asarray(output, dtype=np.int64)
    if not arrival.shape == first_token.shape == finish.shape == output.shape:
        raise ValueError("arrival, first_token, finish and output must have one length")
    if ((first_token < arrival) | (finish < first_token)).any():
        raise ValueError("each request needs arrival <= first_token <= finish")
    ttft = first_token - arrival
    e2e = finish - arrival
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(output > 1, (e2e - ttft) / (output - 1), np.nan)
    return {"arrival": arrival, "first_token": first_token, "finish": finish, "output": output,
            "ttft": ttft, "tpot": tpot, "e2e": e2e}


def inter_token_latencies(token_times) -> np.ndarray:
    """All gaps between consecutive tokens of each request (``token_times``: one array of
    token timestamps per request), pooled."""
    gaps = [np.diff(np.asarray(times, dtype=np.float64)) for times in token_times]
    return np.concatenate(gaps) if gaps else np.empty(0)


def meets_slo(requests: pd.DataFrame, slo: dict) -> np.ndarray:
    """Whether each request met every SLO in ``slo`` ({"ttft": s, "tpot": s, "e2e": s});
    a one-token request has no TPOT, and meets any TPOT SLO."""
    unknown = set(slo) - set(SLO_METRICS)
    if unknown:
        raise ValueError(f"SLOs can be set on {', '.join(SLO_METRICS)}, not {', '.join(sorted(unknown))}")
    met = np.ones(len(requests), dtype=bool)
    for metric, limit in slo.items():
        values = requests[metric].to_numpy()
        met &= np.isnan(values) | (values <= limit)
    return met


def summarize(requests: pd.DataFrame, slo: dict | None = None) -> pd.Series:
    """Throughput, goodput and percentiles of a ``request_metrics`` frame."""
    if requests.empty:
        raise ValueError("no requests to summarize")
    duration = float(requests.finish.max() - requests.arrival.min())
    rate = 1.0 / duration if duration > 0 else float("nan")
    summary = {"requests": len(requests), "duration": duration, "throughput": len(requests) * rate,
               "output_tokens_per_s": float(requests.output.sum()) * rate}
    if slo:
        met = meets_slo(requests, slo)
        summary["goodput"] = float(met.sum()) * rate
        summary["slo_attainment"] = float(met.mean())
    for metric in SLO_METRICS:
        values = requests[metric].to_numpy()
        values = values[~np.isnan(values)]
        summary[f"{metric}_mean"] = float(values.mean()) if values.size else float("nan")
        quantiles = np.percentile(values, PERCENTILES) if values.size else [float("nan")] * len(PERCENTILES)
        for q, value in zip(PERCENTILES, quantiles):
            summary[f"{metric}_p{q}"] = float(value)
    return pd.Series(summary)
