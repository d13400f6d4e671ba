"""LLM-serving batching: workloads, the serving benchmarks' metrics, the static, dynamic
and continuous (chunked, paged) schedulers simulated under a roofline cost model, and
training-side token budgets and packing.

``serve`` runs the same schedulers on ``TinyTransformer``, a real model.
Pure core: no Jupyter imports.
"""
from ._capacity import Capacity, capacity
from ._metrics import inter_token_latencies, meets_slo, request_metrics, summarize
from ._packing import pack_sequences, packed_batch, padding_waste, token_budget_batches
from ._serve import serve
from ._simulate import ContinuousBatcher, CostModel, DynamicBatcher, SimulationResult, StaticBatcher, simulate
from ._transformer import KVCache, TinyTransformer
from ._workload import Lengths, Workload

__all__ = ["Capacity", "ContinuousBatcher", "CostModel", "DynamicBatcher", "KVCache", "Lengths", "SimulationResult",
           "StaticBatcher", "TinyTransformer", "Workload", "capacity", "inter_token_latencies", "meets_slo",
           "pack_sequences", "packed_batch", "padding_waste", "request_metrics", "serve", "simulate", "summarize",
           "token_budget_batches"]
