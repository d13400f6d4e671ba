"""LLM-serving batching: workloads and the serving benchmarks' metrics (so far).

Schedulers, the cost model, the simulator and the real executor follow (issue [E]).
Pure core: no Jupyter imports.
"""
from ._metrics import inter_token_latencies, meets_slo, request_metrics, summarize
from ._workload import Lengths, Workload

__all__ = ["Lengths", "Workload", "inter_token_latencies", "meets_slo", "request_metrics", "summarize"]
