"""The ``%batching`` panel: a serving scheduler simulated at slider speed, its latency
against arrival rate beside the saturation rate the cost model predicts, what ran in
each iteration and KV memory over time; a button serves a small version on the real
tiny transformer and sets the fitted simulator beside it."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

import ipywidgets as widgets
import numpy as np
import pandas as pd

from ..serving import (ContinuousBatcher, CostModel, DynamicBatcher, Lengths, SimulationResult, StaticBatcher,
                       Workload, serve, simulate)
from ._lab_panel import LabPanel, button, check_ranges, control_row, dropdown, slider
from ._plots import panel_axes, png_of

POLICIES = ("static", "dynamic", "continuous", "chunked")
# the rate slider's range, and requests simulated per move (the panel stays interactive up to 20,000)
RANGES = {"rate": (0.1, 1000), "requests": (50, 20_000)}
LENGTHS = {  # name: (prompt, output)
    "chat": (Lengths.uniform(32, 512), Lengths.exponential(128.0, high=1024)),
    "long-prompt": (Lengths.uniform(1024, 4096), Lengths.exponential(64.0, high=512)),
    "zipf": (Lengths.zipf(1.1, 4096, low=16), Lengths.zipf(1.1, 1024)),
}
TRACE = "trace"
TRACE_FORMAT = "a CSV with columns arrived_at,num_prefill_tokens,num_decode_tokens (seconds, tokens), two rows or more"
LENGTH_LABELS = {  # what the lengths dropdown shows for each choice
    "chat": "chat: prompt uniform 32-512, output exponential 128",
    "long-prompt": "long prompts: uniform 1024-4096, output exponential 64",
    "zipf": "zipf 1.1: prompt 16-4096, output 1-1024",
    TRACE: "the trace (--trace), at the rate slider's rate",
}
# knobs that mean something under each policy; the others are disabled
KNOBS = {"static": {"max_seqs", "kv_tokens"}, "dynamic": {"max_seqs", "max_wait_ms", "kv_tokens"},
         "continuous": {"max_seqs", "max_tokens", "kv_tokens", "block", "preempt"},
         "chunked": {"max_seqs", "max_tokens", "chunk", "kv_tokens", "block", "preempt"}}
SWEEP = (0.3, 0.6, 0.85, 1.0, 1.2, 1.5)  # the hockey stick's rates, as multiples of saturation (and the chosen rate)
SWEEP_REQUESTS = 300
TIMELINE_WINDOW = 300  # iterations shown in the batch timeline
REAL_REQUESTS = 48
REAL_PROMPT, REAL_OUTPUT = 256, 128  # the real run's length caps: a few seconds on two cores
MAX_OUTPUT = 1024
COST = CostModel()


def build_scheduler(policy, max_seqs, max_wait_ms, max_tokens, chunk, kv_tokens, block, preempt,
                    max_output=MAX_OUTPUT):
    kv = None if kv_tokens == "unlimited" else int(kv_tokens)
    if policy == "static":
        return StaticBatcher(max_seqs, kv_tokens=kv, max_output=max_output)
    if policy == "dynamic":
        return DynamicBatcher(max_seqs, max_wait_ms / 1000, kv_tokens=kv, max_output=max_output)
    return ContinuousBatcher(max_seqs, max_tokens, chunk=chunk if policy == "chunked" else None, kv_tokens=kv,
                             block=None if block == "reserve" else int(block), preempt=preempt,
                             max_output=max_output)


def saturation_rate(workload: Workload, scheduler, cost: CostModel) -> float:
    """Requests per second at which the server is busy all the time, from the cost model.

    With batches of B sequences decoding (B = max_seqs, fewer when the KV budget cannot
    hold B mean-sized contexts), one iteration takes t = cost.iteration(0, B, B c, B c)
    for the mean context c = mean prompt + mean output / 2. A request occupies a slot
    for its output's iterations: the mean output for continuous batching, and for static
    batching the longest output of its batch (estimated from the workload's own lengths
    in groups of B). Its prefill adds per_token P + per_pair P (P + 1) / 2 of compute.
    Saturation is one request per (slot iterations x t / B + prefill) seconds.
    """
    prompt, output = workload.prompt.mean(), workload.output.mean()
    context = prompt + output / 2
    batch = scheduler.max_seqs
    if scheduler.kv_tokens is not None:
        held = prompt + scheduler.max_output if scheduler.block is None else context
        batch = max(1, min(batch, int(scheduler.kv_tokens // held)))
    step = cost.iteration(0, batch, int(batch * context), int(batch * context))
    if isinstance(scheduler, ContinuousBatcher):
        iterations = output
    else:
        groups = workload.output[: len(workload) // batch * batch].reshape(-1, batch) if len(workload) >= batch \
            else workload.output[None]
        iterations = groups.max(axis=1).mean()
    prefill = cost.per_token * prompt + cost.per_pair * prompt * (prompt + 1) / 2
    return 1.0 / (iterations * step / batch + prefill)


@dataclass
class BatchingMeasurement:
    workload: Workload
    scheduler: object
    result: SimulationResult
    sweep: pd.DataFrame  # rate, e2e_p50, e2e_p99, ttft_p50, throughput, goodput
    saturation: float
    slo: dict
    setting: dict | None = field(default=None)  # the panel's values that were measured
    real: dict | None = field(default=None)  # the real run of this setting, when there is one


def measure_batching(policy, max_seqs, max_wait_ms, max_tokens, chunk, kv_tokens, block, preempt, rate, cv,
                     lengths, slo_ttft, slo_tpot, requests=1000, trace=None, seed=0) -> BatchingMeasurement:
    workload = make_workload(lengths, rate, cv, requests, trace, seed)
    scheduler = build_scheduler(policy, max_seqs, max_wait_ms, max_tokens, chunk, kv_tokens, block, preempt,
                                max(MAX_OUTPUT, int(workload.output.max())))
    if policy == "continuous" and workload.prompt.max() > max_tokens:  # in the panel's terms, not the core's
        raise ValueError(f"prompts of up to {workload.prompt.max()} tokens do not fit the token budget of "
                         f"{max_tokens} whole: raise the budget, or choose chunked to prefill them in pieces")
    slo = {"ttft": slo_ttft, "tpot": slo_tpot}
    result = simulate(workload, scheduler, COST)
    saturation = saturation_rate(workload, scheduler, COST)
    head = Workload(workload.arrival[:SWEEP_REQUESTS], workload.prompt[:SWEEP_REQUESTS],
                    workload.output[:SWEEP_REQUESTS])
    rows = []
    # across the predicted knee, so the curve can be held against the theory, and through the chosen rate
    for swept in np.unique([*(saturation * factor for factor in SWEEP), rate]):
        summary = simulate(head.at_rate(swept), scheduler, COST).summary(slo)
        rows.append({"rate": swept, **summary[["e2e_p50", "e2e_p99", "ttft_p50", "throughput", "goodput"]]})
    return BatchingMeasurement(workload, scheduler, result, pd.DataFrame(rows), saturation, slo)


def make_workload(lengths, rate, cv, requests, trace, seed) -> Workload:
    """The workload, replayed at exactly ``rate`` (a sample's own rate strays from its mean)."""
    if lengths == TRACE:
        if trace is None:
            raise ValueError("no trace: open the panel with %batching --trace PATH")
        return Workload.from_trace(trace, limit=requests).at_rate(rate)
    prompt, output = LENGTHS[lengths]
    return Workload.gamma(rate, cv, requests, prompt, output, seed=seed).at_rate(rate)


def draw_batching(m: BatchingMeasurement, figure=None) -> tuple[bytes, str, object]:
    fig, axes = panel_axes(figure, 3, 10.0, 2.8, left=0.06, right=0.97, bottom=0.16, top=0.9, wspace=0.42)
    stick, batches, memory = axes[:3]
    if len(axes) > 3:
        rates = axes[3]
    else:  # requests/s on the right of the hockey stick; later drawings reuse it, and these labels
        rates = stick.twinx()
        rates.tick_params(labelsize=7)
        rates.locator_params(nbins=4)
        for ax, x, y in ((stick, "arrival rate (req/s)", "e2e latency (s)"), (rates, None, "req/s"),
                         (batches, "iteration", "tokens / sequences"), (memory, "time (s)", "KV tokens held")):
            if x:
                ax.set_xlabel(x, fontsize=7, labelpad=1)
            ax.set_ylabel(y, fontsize=7, labelpad=1)
    for ax, title in ((stick, "latency and rates against load"), (batches, "what each iteration ran"),
                      (memory, "KV cache over time")):
        ax.set_title(title, fontsize=8, pad=3)
    sweep = m.sweep
    rates.plot(sweep.rate, sweep.throughput, "-", color="0.55", lw=1, label="throughput")
    rates.plot(sweep.rate, sweep.goodput, ":", color="tab:green", lw=1.5, label="goodput")
    stick.plot(sweep.rate, sweep.e2e_p50, "o-", ms=3, label="e2e p50")
    stick.plot(sweep.rate, sweep.e2e_p99, "s-", ms=3, label="e2e p99")
    stick.axvline(m.saturation, color="0.4", ls="--", lw=1)
    chosen = sweep[np.isclose(sweep.rate, m.workload.describe()["rate"])]
    stick.plot(chosen.rate, chosen.e2e_p50, "k*", ms=9)
    current = m.result.summary(m.slo)  # throughput, percentiles, and goodput against the SLOs
    if m.real is not None:
        stick.plot([m.real["rate"]], [m.real["real"].e2e_p50], "rD", ms=5)
        stick.plot([m.real["rate"]], [m.real["simulated"].e2e_p50], "bx", ms=7)
    handles = stick.get_legend_handles_labels()[0] + rates.get_legend_handles_labels()[0]
    stick.legend(handles=handles, fontsize=6, frameon=False, loc="upper left")
    timeline = m.result.timeline
    start = max(0, len(timeline) // 2 - TIMELINE_WINDOW // 2)
    window = timeline.iloc[start:start + TIMELINE_WINDOW]
    steps = np.arange(start, start + len(window))
    # linear axes, step lines and one legend: text and filled polygons are the costliest
    # parts of a redraw (the summary says what each line is)
    tokens = (window.decode_seqs + window.prefill_tokens).to_numpy()
    batches.plot(steps, tokens, drawstyle="steps-mid", color="tab:orange", lw=0.8)
    batches.plot(steps, window.decode_seqs.to_numpy(), drawstyle="steps-mid", color="tab:green", lw=0.8)  # on top
    if isinstance(m.scheduler, ContinuousBatcher) and m.scheduler.max_tokens <= 2 * tokens.max():
        batches.axhline(m.scheduler.max_tokens, color="0.4", ls="--", lw=1)  # far above, it would flatten the rest
    every = max(1, len(timeline) // 600)  # a plotted point per few iterations is enough for the eye
    memory.plot(timeline.start.to_numpy()[::every], timeline.kv_tokens.to_numpy()[::every], lw=0.8)
    if m.scheduler.kv_tokens is not None:
        memory.axhline(m.scheduler.kv_tokens, color="tab:red", ls="--", lw=1)
    preempted = timeline[timeline.preempted > 0]
    if len(preempted):
        memory.plot(preempted.start, preempted.kv_tokens, "rv", ms=3)
    return png_of(fig), summary_html(m, current), fig


def summary_html(m: BatchingMeasurement, current: pd.Series) -> str:
    rows = "".join(f"<tr><td>{metric}</td>" + "".join(f"<td>{current[f'{metric}_p{q}']:.3f}</td>"
                                                      for q in (50, 90, 99)) + "</tr>"
                   for metric in ("ttft", "tpot", "e2e"))
    text = (f"<p>{len(m.workload):,} requests at {m.workload.describe()['rate']:.2f} req/s: throughput "
            f"{current.throughput:.2f} req/s, {current.output_tokens_per_s:,.0f} output tokens/s; goodput "
            f"{current.goodput:.2f} req/s ({current.slo_attainment:.1%} meet TTFT &le; {m.slo['ttft']:g} s and "
            f"TPOT &le; {m.slo['tpot']:g} s); preemptions {int(m.result.requests.preemptions.sum())}; "
            f"saturation by the cost model {m.saturation:.2f} req/s</p>"
            f"<table><tr><th>seconds</th><th>p50</th><th>p90</th><th>p99</th></tr>{rows}</table>"
            f"<p><i>Left</i>: end-to-end latency p50 and p99 (s) against arrival rate (req/s), the first "
            f"{min(SWEEP_REQUESTS, len(m.workload))} requests simulated at this rate (the star) and at rates around "
            "the one where the cost model says the server saturates (dashed); on the right axis, throughput (grey) "
            "and goodput (dotted) in req/s over the same rates. After a real run, its p50 (red diamond) and the "
            "fitted simulator's (blue cross). <i>Middle</i>: what ran in each iteration of a window mid-run: "
            "decoding sequences (green), those plus prefill tokens (orange), the token budget (dashed, when the "
            "iterations come near it). <i>Right</i>: KV tokens held against time (s), the budget (dashed red), "
            "preemptions (red triangles).</p>")
    if m.real is not None:
        real, simulated = m.real["real"], m.real["simulated"]
        text += (f"<p>real model, {m.real['requests']} requests (prompts &le; {REAL_PROMPT}, outputs &le; "
                 f"{REAL_OUTPUT} tokens): {real.output_tokens_per_s:,.0f} tokens/s, e2e p50 {real.e2e_p50:.3f} s; "
                 f"the simulator fitted to it: {simulated.output_tokens_per_s:,.0f} tokens/s "
                 f"({simulated.output_tokens_per_s / real.output_tokens_per_s - 1:+.0%}), e2e p50 "
                 f"{simulated.e2e_p50:.3f} s ({simulated.e2e_p50 / real.e2e_p50 - 1:+.0%})</p>")
    return text


def run_real(m: BatchingMeasurement, model=None) -> dict:
    """The first REAL_REQUESTS requests of the measured workload, lengths capped, served on
    the real model; then the simulator with the cost model fitted to that run."""
    w = m.workload
    small = Workload(w.arrival[:REAL_REQUESTS], np.minimum(w.prompt[:REAL_REQUESTS], REAL_PROMPT),
                     np.minimum(w.output[:REAL_REQUESTS], REAL_OUTPUT))
    scheduler = m.scheduler
    if isinstance(scheduler, ContinuousBatcher) and scheduler.chunk is None:
        scheduler = ContinuousBatcher(scheduler.max_seqs, max(scheduler.max_tokens, REAL_PROMPT), None,
                                      scheduler.kv_tokens, scheduler.block, scheduler.preempt,
                                      scheduler.max_output)
    real = serve(small, scheduler, model)
    fitted = CostModel.fit(real.timeline)
    return {"requests": len(small), "rate": small.describe()["rate"], "real": real.summary(),
            "simulated": simulate(small, scheduler, fitted).summary(), "cost": fitted}


class BatchingPanel(LabPanel):
    """Policy and its knobs, the arrival process and the SLOs; every move simulates the
    setting and a sweep of rates around it. "run on the real model" serves a small
    version on TinyTransformer in the background and overlays it."""

    def __init__(self, policy: str = "continuous", rate: float = 8.0, requests: int = 1000,
                 trace: str | None = None, lengths: str | None = None):
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        check_ranges(RANGES, rate=rate, requests=requests)
        if trace is not None:
            try:  # read the way the panel will, so a file that is not a trace is refused before it opens
                make_workload(TRACE, rate, 1.0, requests, trace, seed=0)
            except (OSError, ValueError) as exc:  # pandas' parse errors are ValueErrors
                reason = " ".join(str(exc).split())  # pandas' messages can span lines
                raise ValueError(f"trace: {trace} is not a trace: expected {TRACE_FORMAT} ({reason})") from None
        choices = [*LENGTHS, *([TRACE] if trace else [])]
        lengths = lengths or (TRACE if trace else "chat")
        if lengths not in choices:
            raise ValueError(f"lengths must be one of {', '.join(choices)}, got {lengths!r}")
        self.requests, self.trace = requests, trace
        self.real_run = None  # (setting, figures) of the last real run, overlaid while that setting is shown

        def log_slider(description, value, bounds):
            return slider(widgets.FloatLogSlider, description, bounds, value=value, step=0.05, readout_format=".3g")

        def choice(description, options, value):
            return slider(widgets.SelectionSlider, description, options=options, value=value)

        controls = {
            "policy": dropdown("policy", POLICIES, policy),
            "max_seqs": slider(widgets.IntSlider, "max batch", value=64, min=1, max=256),
            "max_wait_ms": slider(widgets.FloatSlider, "max wait ms", value=20.0, min=0.0, max=500.0, step=5.0),
            "max_tokens": choice("token budget", [256, 512, 1024, 2048, 4096, 8192], 4096),
            "chunk": choice("chunk", [64, 128, 256, 512, 1024, 2048], 512),
            "kv_tokens": choice("KV budget", [4096, 8192, 16_384, 32_768, 65_536, 131_072, "unlimited"], 65_536),
            "block": dropdown("KV block", ["reserve", "8", "16", "32"], "16"),
            "preempt": dropdown("preempt", ["recompute", "swap"], "recompute"),
            "rate": log_slider("rate req/s", rate, RANGES["rate"]),
            "cv": slider(widgets.FloatSlider, "burstiness CV", value=1.0, min=0.25, max=8.0, step=0.25),
            "lengths": dropdown("lengths", [(LENGTH_LABELS[name], name) for name in choices], lengths),
            "slo_ttft": log_slider("SLO TTFT s", 1.0, (0.01, 30)),
            "slo_tpot": log_slider("SLO TPOT s", 0.05, (0.001, 1)),
        }
        self.real_button = button("run on the real model", icon="play")
        self.real_button.on_click(self._run_real)
        controls["policy"].observe(self._enable_knobs, names="value")
        controls["lengths"].observe(self._enable_knobs, names="value")
        super().__init__("Batching: LLM-serving schedulers, simulated and real", controls)
        self.children = (*self.children[:2], control_row(self.real_button), *self.children[2:])
        self._enable_knobs()

    def _enable_knobs(self, _change=None) -> None:
        active = KNOBS[self.controls["policy"].value]
        for name in ("max_seqs", "max_wait_ms", "max_tokens", "chunk", "kv_tokens", "block", "preempt"):
            self.controls[name].disabled = name not in active
        self.controls["cv"].disabled = self.controls["lengths"].value == TRACE  # a trace brings its own gaps

    def measure(self, **values):
        self.warm_up("simulator", lambda: simulate(Workload([0.0, 0.1], [4, 4], [2, 2]), ContinuousBatcher(2, 64)))
        m = measure_batching(**values, requests=self.requests, trace=self.trace)
        m.setting = values
        if self.real_run is not None and self.real_run[0] == values:
            m.real = self.real_run[1]
        return m

    def draw(self, result):
        png, summary, self.figure = draw_batching(result, self.figure)
        return png, summary

    def _run_real(self, _button=None) -> threading.Thread:
        """Serve on the real model off the kernel's main thread, then redraw with the overlay."""
        measurement = self.result  # what is on show, even while a newer setting is being measured
        if measurement is None:
            self.status.value = "nothing measured yet"
            return None
        self.real_button.disabled = True
        self.status.value = f"serving {REAL_REQUESTS} requests on TinyTransformer ..."

        def work():
            try:
                self.real_run = (measurement.setting, run_real(measurement))
                self._changed()
            except Exception as exc:  # shown in the panel: a thread's error would otherwise vanish
                self.status.value = f"error: {type(exc).__name__}: {exc}"
            finally:
                self.real_button.disabled = False

        thread = threading.Thread(target=work, name="BatchingPanel-real", daemon=True)
        thread.start()
        return thread
