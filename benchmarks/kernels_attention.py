"""Attention (issue [C]): this package's "auto" backend against torch's SDPA and naive numpy.

B=1, H=8, D=64 float32 at L = 512, 2048 and 8192, causal and not. Target: "auto"
takes at most 1.0x torch's time (torch on 2 threads) in every case. The naive
version (the whole L x L matrix) runs up to L = 2048: at 8192 it needs 2 GiB. Run from the repository root, on a quiet machine:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/kernels_attention.py
"""
from __future__ import annotations

import statistics
import time

import numpy as np

from mlsys_ext import describe_machine
from mlsys_ext.kernels import attention, compile_log, matmul_peak_gflops, resolve_backend

BATCH, HEADS, DIM = 1, 8, 64
LENGTHS = (512, 2048, 8192)
NAIVE_UP_TO = 2048
TORCH_THREADS = 2
TARGET_RATIO = 1.0  # auto / torch


def naive_attention(q, k, v, causal: bool):
    """The whole L x L score matrix at once, in q's dtype."""
    scores = q @ np.swapaxes(k, -1, -2) * np.float32(1 / np.sqrt(q.shape[-1]))
    if causal:
        scores[..., ~np.tri(q.shape[2], k.shape[2], dtype=bool)] = -np.inf  # top-left aligned, as torch
    scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return (scores / scores.sum(axis=-1, keepdims=True)) @ v


def _seconds(call, repeats: int) -> list[float]:
    """``repeats`` timings of ``call`` after one untimed call. Each implementation runs
    in a block of its own, after a pause: BLAS and OpenMP workers spin for a while
    after a call, and interleaving would charge that to whichever runs next."""
    time.sleep(0.3)
    call()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return seconds


def bench_attention(peak_gflops: float, repeats: int = 5) -> str:
    """The table, with PASS/MISS lines for the target and the kernels' compile time."""
    import torch

    rng = np.random.default_rng(0)
    backend = resolve_backend("auto")
    compiled_before = len(compile_log())
    start = time.perf_counter()
    tiny = rng.standard_normal((3, BATCH, HEADS, 16, DIM), dtype=np.float32)
    attention(*tiny)  # compiles, or loads numba's cache
    first_call = time.perf_counter() - start
    compile_seconds = compile_log().iloc[compiled_before:]["seconds"].sum()

    torch_threads = torch.get_num_threads()
    torch.set_num_threads(TORCH_THREADS)
    torch_name = f"torch SDPA ({TORCH_THREADS} thr)"
    lines = [f"attention B={BATCH} H={HEADS} D={DIM} float32; matmul peak {peak_gflops:.0f} GFLOP/s; "
             f"median of {repeats} (3 at L=8192), +- half the min-max spread",
             f"{'L':>6}  {'case':<8}{'implementation':<24}{'seconds':>10}{'+-':>9}{'/torch':>8}{'GFLOP/s':>9}"
             f"{'% peak':>8}"]
    verdicts = []
    try:
        for length in LENGTHS:
            q, k, v = rng.standard_normal((3, BATCH, HEADS, length, DIM), dtype=np.float32)
            tq, tk, tv = (torch.from_numpy(a) for a in (q, k, v))
            for causal in (False, True):
                calls = {
                    f"mlsys_ext ({backend})": lambda: attention(q, k, v, causal=causal),
                    torch_name: lambda: torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=causal),
                }
                if length <= NAIVE_UP_TO:
                    calls["naive numpy (L x L)"] = lambda: naive_attention(q, k, v, causal)
                seconds = {name: _seconds(call, repeats if length < 8192 else 3) for name, call in calls.items()}
                flops = 4 * BATCH * HEADS * length * length * DIM / (2 if causal else 1)
                torch_median = statistics.median(seconds[torch_name])
                case = "causal" if causal else "full"
                for name, times in seconds.items():
                    median = statistics.median(times)
                    gflops = flops / median / 1e9
                    lines.append(f"{length:>6}  {case:<8}{name:<24}{median:>10.4f}{(max(times) - min(times)) / 2:>9.4f}"
                                 f"{median / torch_median:>8.2f}{gflops:>9.1f}{100 * gflops / peak_gflops:>7.0f}%")
                ratio = statistics.median(seconds[f"mlsys_ext ({backend})"]) / torch_median
                verdicts.append(f"{'PASS' if ratio <= TARGET_RATIO else 'MISS'} L={length} {case}: auto / torch SDPA = "
                                f"{ratio:.2f} (target <= {TARGET_RATIO:.1f})")
    finally:
        torch.set_num_threads(torch_threads)
    lines += verdicts
    lines.append(f"compile: {compile_seconds:.2f} s of numba compiling or cache loading in the first call "
                 f"({first_call:.2f} s in all), not in the times above")
    return "\n".join(lines)


if __name__ == "__main__":
    print(describe_machine(), end="\n\n")
    print(bench_attention(matmul_peak_gflops()))
