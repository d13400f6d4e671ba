"""LLM-serving batching: workloads, the serving benchmarks' metrics, and training-side
token budgets and packing (so far).

Schedulers, the cost model, the simulator and the real executor follow (issue [E]).
Pure core: no Jupyter imports.
"""
from ._metrics import inter_token_latencies, meets_slo, request_metrics, summarize
from ._packing import pack_sequences, packed_batch, padding_waste, token_budget_batches
from ._workload import Lengths, Workload

__all__ = ["Lengths", "Workload", "inter_token_latencies", "meets_slo", "pack_sequences", "packed_batch",
           "padding_waste", "request_metrics", "summarize", "token_budget_batches"]
