"""The attention panel: this package's flash-style ``attention`` timed beside naive numpy
(the whole L x L score matrix) and torch's SDPA when torch is installed."""
from __future__ import annotations

from dataclasses import dataclass

import ipywidgets as widgets
import numba
import numpy as np

from ..kernels import attention, attention_tiles, available_backends, matmul_peak_gflops, resolve_backend
from ._lab_panel import LabPanel, best_seconds, check_ranges, checkbox, dropdown, noise_note, slider
from ._plots import panel_axes, plain_log_scale, png_of

HEAD_DIMS = (16, 32, 64, 128)  # the head-dim dropdown; a head dim given up to the largest joins it
# what the sliders and dropdown show, and what %attention accepts
RANGES = {"seq_len": (16, 4096), "heads": (1, 16), "head_dim": (1, max(HEAD_DIMS))}

REPEATS = 2  # best of, within BUDGET seconds per figure: a slider move must answer within ~200 ms
BUDGET = 0.03
SWEEP_FRACTIONS = (0.25, 0.5, 1.0)  # the lengths of the timing sweep, as parts of L
MEMORY_CURVE_TO = 4096  # the memory curves reach here, where the tiles' cap shows


@dataclass
class AttentionMeasurement:
    seq_len: int
    heads: int
    head_dim: int
    backend: str
    causal: bool
    threads: int
    seconds: dict  # implementation -> best seconds per call at seq_len
    lengths: np.ndarray  # the sweep's L values
    sweep_seconds: dict  # implementation -> seconds at each of lengths
    peak_gflops: float

    def flops(self, seq_len: int | None = None) -> float:
        """4 B H Lq Lk D (the two matmuls), halved when causal; B = 1."""
        length = self.seq_len if seq_len is None else seq_len
        return 4.0 * self.heads * length * length * self.head_dim / (2 if self.causal else 1)


def usable_backends() -> list[str]:
    """Backends that run at full speed here (not the CUDA simulator)."""
    return [name for name, (usable, why) in available_backends().items() if usable and "simulator" not in why]


def naive_attention(q, k, v, causal: bool):
    """The textbook form: the whole L x L score matrix, then softmax, in q's dtype."""
    scores = q @ np.swapaxes(k, -1, -2) * q.dtype.type(1 / np.sqrt(q.shape[-1]))
    if causal:
        scores[..., ~np.tri(q.shape[2], k.shape[2], dtype=bool)] = -np.inf
    scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return (scores / scores.sum(axis=-1, keepdims=True)) @ v


def _torch_sdpa(threads: int):
    """torch's SDPA on ``threads`` threads as a numpy -> numpy call, or None without torch."""
    try:
        import torch
    except ImportError:
        return None

    def call(q, k, v, causal):
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return torch.nn.functional.scaled_dot_product_attention(
                torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(v), is_causal=causal)
        finally:
            torch.set_num_threads(before)

    return call


def measure_attention(seq_len: int, heads: int, head_dim: int, backend: str, causal: bool,
                      threads: int, checkpoint=lambda: None) -> AttentionMeasurement:
    """Best-of-3 seconds per call (B=1, float32) of ``attention`` on ``backend``, naive numpy
    and torch's SDPA, at seq_len and along a sweep of shorter lengths. ``checkpoint`` is
    called between implementations (a panel's, to give up a stale run)."""
    rng = np.random.default_rng(0)
    implementations = {backend: lambda q, k, v: attention(q, k, v, causal=causal, backend=backend, threads=threads),
                       "naive numpy": lambda q, k, v: naive_attention(q, k, v, causal)}
    torch_sdpa = _torch_sdpa(threads)
    if torch_sdpa is not None:
        implementations["torch SDPA"] = lambda q, k, v: torch_sdpa(q, k, v, causal)
    lengths = np.unique([max(1, int(seq_len * f)) for f in SWEEP_FRACTIONS])
    inputs = [rng.standard_normal((3, 1, heads, length, head_dim), dtype=np.float32) for length in lengths]
    # one implementation at a time: BLAS and OpenMP workers spin for a while after a call,
    # and would slow whichever implementation ran next
    sweep = {}
    for name, call in implementations.items():
        checkpoint()
        sweep[name] = [best_seconds(lambda: call(*qkv), REPEATS, BUDGET) for qkv in inputs]
    m = AttentionMeasurement(seq_len, heads, head_dim, backend, causal, threads,
                             {name: times[-1] for name, times in sweep.items()}, lengths,
                             {name: np.array(times) for name, times in sweep.items()}, matmul_peak_gflops())
    if m.flops() / min(m.seconds.values()) / 1e9 > m.peak_gflops:
        m.peak_gflops = matmul_peak_gflops(again=True)  # the peak may have been measured on a busy machine
    return m


def contradictions(m: AttentionMeasurement) -> list[str]:
    """Figures the theory rules out: a rate above the matmul peak (attention is two matmuls
    and a softmax, so it cannot beat them), or a call that got faster at a longer L (the work
    grows as L^2)."""
    found = [f"{name} at {100 * m.flops() / seconds / 1e9 / m.peak_gflops:.0f}% of the matmul peak"
             for name, seconds in m.seconds.items() if m.flops() / seconds / 1e9 > m.peak_gflops]
    for name, seconds in m.sweep_seconds.items():
        faster = np.flatnonzero(seconds[1:] < seconds[:-1])
        found += [f"{name} faster at L={m.lengths[i + 1]} than at L={m.lengths[i]}" for i in faster]
    return found


def score_bytes(m: AttentionMeasurement, lengths: np.ndarray) -> dict[str, np.ndarray]:
    """Bytes of float32 scores held at once, computed from sizes: the naive form's H L x L
    against the numba kernel's one tile per thread (its shape measured on this machine)."""
    lengths = np.asarray(lengths, dtype=np.float64)
    q_tile, k_tile = attention_tiles(np.float32, m.head_dim, m.causal, m.threads)
    return {"naive: H L x L": 4.0 * m.heads * lengths**2,
            f"flash: {m.threads} x {q_tile} x {k_tile} tile": 4.0 * m.threads * np.minimum(lengths, q_tile)
            * np.minimum(lengths, k_tile)}


def draw_attention(m: AttentionMeasurement, figure=None) -> tuple[bytes, str, object]:
    """PNG, summary and the figure, which the next drawing can reuse (see ``panel_axes``)."""
    fig, (bars, times, memory) = panel_axes(figure, 3, 9.0, 2.6, left=0.07, right=0.99, bottom=0.2, top=0.9,
                                            wspace=0.45)
    names = list(m.seconds)
    colors = ["#1f77b4", "#d62728", "#2ca02c"][:len(names)]
    milliseconds = [1000 * m.seconds[name] for name in names]
    above_peak = [m.flops() / m.seconds[name] / 1e9 > m.peak_gflops for name in names]
    bars.bar(range(len(names)), milliseconds, color=["#bbbbbb" if noisy else c for noisy, c in zip(above_peak, colors)],
             hatch=["//" if noisy else "" for noisy in above_peak])
    bars.set_xticks(range(len(names)), [name.replace(" ", "\n", 1) for name in names], fontsize=7)
    bars.set_ylabel("ms per call")
    bars.set_ylim(0, 1.15 * max(milliseconds))  # room above the tallest bar for its label, under the title
    for x, (name, ms, noisy) in enumerate(zip(names, milliseconds, above_peak)):
        bars.annotate("noisy" if noisy else f"{m.flops() / m.seconds[name] / 1e9:.0f} GFLOP/s", (x, ms),
                      ha="center", va="bottom", fontsize=7)
    bars.set_title(f"L={m.seq_len}, H={m.heads}, D={m.head_dim}{', causal' if m.causal else ''}", fontsize=8)
    for name, color in zip(names, colors):
        millis = 1000 * m.sweep_seconds[name]
        times.plot(m.lengths, millis, "o-", ms=3, color=color, label=name)
        faster = np.flatnonzero(millis[1:] < millis[:-1]) + 1  # noise: hollow, so no one reads it as a result
        times.plot(m.lengths[faster], millis[faster], "o", ms=6, mfc="white", color=color)
    times.set_xlabel("sequence length L")
    times.set_ylabel("ms per call")
    times.legend(fontsize=6, frameon=False)
    curve = np.linspace(16, max(MEMORY_CURVE_TO, m.seq_len), 64)  # computed, so it can run past the sweep
    for (name, sizes), style in zip(score_bytes(m, curve).items(), ("-", "--")):
        memory.plot(curve, sizes / 2**20, style, label=name)
    memory.axvline(m.seq_len, color="gray", lw=0.8, ls=":")
    plain_log_scale(memory)
    memory.set_xlabel("sequence length L")
    memory.set_ylabel("MiB of scores")
    memory.set_title("computed from sizes, not measured", fontsize=7)
    memory.legend(fontsize=6, frameon=False)
    rows = "".join(
        f"<tr><td>{name}</td><td>&nbsp; {1000 * seconds:.2f} ms</td>"
        f"<td>&nbsp; {m.flops() / seconds / 1e9:.1f} GFLOP/s</td>"
        f"<td>&nbsp; {100 * m.flops() / seconds / 1e9 / m.peak_gflops:.0f}% of matmul peak</td></tr>"
        for name, seconds in m.seconds.items())
    summary = (f"<table>{rows}</table>FLOPs = 4 B H L<sup>2</sup> D{' / 2 (causal)' if m.causal else ''} "
               f"= {m.flops() / 1e9:.2f} GFLOP; matmul peak {m.peak_gflops:.0f} GFLOP/s"
               + noise_note(contradictions(m)))
    return png_of(fig), summary, fig


class AttentionPanel(LabPanel):
    """Sliders for L, heads, head dim and threads, a backend and a causal switch; each change
    times ``attention`` beside naive numpy and torch's SDPA (B=1, float32) and draws time per
    call, GFLOP/s, time against L and the scores each form holds against L."""

    def __init__(self, seq_len: int = 512, heads: int = 4, head_dim: int = 64, backend: str = "auto",
                 causal: bool = False, threads: int | None = None):
        threads = numba.config.NUMBA_NUM_THREADS if threads is None else threads
        check_ranges({**RANGES, "threads": (1, numba.config.NUMBA_NUM_THREADS)}, seq_len=seq_len, heads=heads,
                     head_dim=head_dim, threads=threads)
        backend = resolve_backend(backend)  # the core refuses the rest, with its message
        tiny = np.zeros((1, heads, 1, head_dim), dtype=np.float32)
        attention(tiny, tiny, tiny, causal=causal, backend="numpy", threads=threads)
        controls = {
            "seq_len": slider(widgets.IntSlider, "L", RANGES["seq_len"], value=seq_len, step=16),
            "heads": slider(widgets.IntSlider, "heads", RANGES["heads"], value=heads),
            "head_dim": dropdown("head dim", sorted({*HEAD_DIMS, head_dim}), head_dim),
            "backend": dropdown("backend", usable_backends(), backend),
            "causal": checkbox("causal", causal),
            "threads": slider(widgets.IntSlider, "threads", value=threads, min=1, max=numba.config.NUMBA_NUM_THREADS),
        }
        super().__init__("Attention: flash-style kernel against naive numpy and torch SDPA", controls)

    def measure(self, seq_len, heads, head_dim, backend, causal, threads):
        tiny = np.zeros((1, 1, 1, head_dim), dtype=np.float32)
        self.warm_up(backend, lambda: attention(tiny, tiny, tiny, backend=backend))
        return measure_attention(seq_len, heads, head_dim, backend, causal, threads, self.checkpoint)

    def draw(self, result):
        png, summary, self.figure = draw_attention(result, self.figure)
        return png, summary
