"""The ``%raft`` panel: a RaftScope-style live view of the simulated cluster, with the
knobs and faults to break it, and a timeline to scrub back through what happened."""
from __future__ import annotations

import math
import threading
import time

import ipywidgets as widgets
import numpy as np

from ..raft import RaftConfig
from ..raft._simulation import Frame, Simulation
from ._lab_panel import button, check_ranges, checkbox, control_row, dropdown, plot_image, show_png, slider
from ._plots import new_figure, png_of

# what %raft -n and %raft study --trials accept: a trial takes ~0.2 s, and the study draws only when done
RANGES = {"n": (1, 9), "trials": (1, 50)}
FRAME_SECONDS = 0.2  # wall seconds between frames while playing
MAX_FRAMES = 1500  # the timeline keeps the last five minutes of play
TERM_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf",
               "#bcbd22", "#7f7f7f")
MESSAGE_COLORS = {"append": "#1f77b4", "heartbeat": "#9ecae1", "vote": "#ff7f0e", "prevote": "#fdae6b",
                  "snapshot": "#2ca02c", "timeout_now": "#d62728", "read_index": "#9467bd"}
ACTIONS = ("crash", "restart", "disconnect", "connect", "isolate", "heal", "request", "timeout", "transfer",
           "partition")


def term_color(term: int) -> str:
    return TERM_COLORS[term % len(TERM_COLORS)]


def draw_frame(frame: Frame) -> bytes:
    """The ring of servers (colour: term; ring: election timer; thick edge: leader), the
    messages on their way, and each server's log coloured by term with its commit index."""
    fig = new_figure(width=9.0, height=3.4)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.08, top=0.92, wspace=0.05)
    ring, logs = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.5]})
    from matplotlib.patches import Arc, Circle

    n = len(frame.nodes)
    angles = [math.pi / 2 - 2 * math.pi * i / n for i in range(n)]
    where = [(math.cos(a), math.sin(a)) for a in angles]
    for src, dst, kind, travelled in frame.messages:
        (x0, y0), (x1, y1) = where[src], where[dst]
        share = min(max(travelled, 0.0), 1.0)
        response = kind.endswith("_resp")
        ring.plot(x0 + (x1 - x0) * share, y0 + (y1 - y0) * share, "o", ms=3 if response else 5,
                  color=MESSAGE_COLORS.get(kind.removesuffix("_resp"), "gray"), mfc="white" if response else None)
    for view, (x, y) in zip(frame.nodes, where):
        leader = view.role == "leader"
        color = term_color(view.term) if view.up else "#dddddd"
        ring.add_patch(Circle((x, y), 0.3, facecolor=color, edgecolor="black", lw=3 if leader else 1,
                              ls="-" if frame.connected[view.id] else "--", alpha=0.9))
        if view.up and not leader:
            ring.add_patch(Arc((x, y), 0.74, 0.74, theta1=90 - 360 * view.election, theta2=90, color="black", lw=1.5))
        label = "down" if not view.up else {"pre_candidate": "pre-cand.", "candidate": "cand."}.get(view.role, view.role)
        ring.text(x, y, f"S{view.id}\nT{view.term}\n{label}", ha="center", va="center", fontsize=6)
        if len(set(frame.groups)) > 1:
            ring.text(x, y - 0.45, f"group {frame.groups[view.id]}", ha="center", fontsize=6)
    ring.set_xlim(-1.5, 1.5)
    ring.set_ylim(-1.5, 1.5)
    ring.set_aspect("equal")
    ring.axis("off")
    ring.set_title(f"t = {frame.time:.2f} s", fontsize=8)
    kinds = {}
    for _, _, kind, _ in frame.messages:
        kinds[kind] = kinds.get(kind, 0) + 1
    flying = ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items())) or "none"
    ring.text(0, -1.48, f"in flight: {flying}", ha="center", fontsize=6, wrap=True)

    leader = next((v for v in frame.nodes if v.role == "leader"), None)
    first = min(v.first_index for v in frame.nodes)
    last = max(v.first_index + len(v.log_terms) - 1 for v in frame.nodes)
    for row, view in enumerate(frame.nodes):
        y = n - 1 - row
        for offset, term in enumerate(view.log_terms):
            index = view.first_index + offset
            logs.add_patch(_square(index, y, term_color(term), committed=index <= view.commit))
        logs.text(first - 0.8, y, f"S{view.id}", ha="right", va="center", fontsize=7)
        if leader is not None and view.id in leader.progress:
            match, next_index, state = leader.progress[view.id]
            logs.text(last + 1.6, y, f"match {match}, next {next_index} ({state})", va="center", fontsize=6)
    logs.set_xlim(first - 2, last + 9)
    logs.set_ylim(-0.8, n - 0.2)
    logs.axis("off")
    logs.set_title("logs by term (faded: not yet committed on that server)", fontsize=8)
    return png_of(fig)


def _square(index, y, color, committed):
    from matplotlib.patches import Rectangle

    return Rectangle((index - 0.45, y - 0.35), 0.9, 0.7, facecolor=color, edgecolor="black", lw=0.3,
                     alpha=1.0 if committed else 0.35)


class RaftPanel(widgets.VBox):
    """Play, pause and scrub a simulated Raft cluster; change its timing, network and
    replication knobs (timing and replication start a new run with the same seed); crash,
    restart, disconnect or isolate a server, partition into any groups, heal, send a client
    request, force a timeout, transfer leadership."""

    def __init__(self, n: int = 5, seed: int = 0, speed: float = 1.0):
        self._stop = threading.Event()  # first: close() runs even when the checks below refuse
        check_ranges(RANGES, n=n)
        self.n, self.seed = n, seed
        self.frames: list[Frame] = []
        self._lock = threading.RLock()
        self._requests = 0
        config = RaftConfig()
        self.play = widgets.ToggleButton(value=False, description="play", icon="play")
        self.speed = slider(widgets.FloatLogSlider, "speed x", value=speed, base=10, min=-1, max=1)
        self.timeline = slider(widgets.IntSlider, "timeline", value=0, min=0, max=0)
        self.knobs = {
            "election": slider(widgets.FloatRangeSlider, "election s", value=config.election_timeout, min=0.1,
                               max=3.0, step=0.05),
            "heartbeat": slider(widgets.FloatSlider, "heartbeat s", value=config.heartbeat, min=0.02, max=0.5,
                                step=0.01),
            "max_batch": slider(widgets.IntSlider, "batch", value=config.max_batch, min=1, max=256),
            "max_inflight": slider(widgets.IntSlider, "in flight", value=config.max_inflight, min=1, max=32),
            "prevote": checkbox("PreVote", config.prevote),
            "check_quorum": checkbox("CheckQuorum", config.check_quorum),
        }
        self.drop = slider(widgets.FloatSlider, "drop", value=0.0, min=0.0, max=0.5, step=0.01)
        self.latency = slider(widgets.FloatRangeSlider, "latency ms", value=(0.5, 2.0), min=0.0, max=100.0, step=0.5)
        self.node = dropdown("server", list(range(n)), 0)
        self.groups = widgets.Text(value=("0,1 | " + ",".join(map(str, range(2, n)))) if n > 2 else "",
                                   description="partition", layout=widgets.Layout(width="220px"))
        self.buttons = {action: button(action) for action in ACTIONS}
        self.image = plot_image()
        self.status = widgets.Label()
        self.sim = self._new_simulation()
        self.play.observe(self._play_changed, names="value")
        self.timeline.observe(self._scrubbed, names="value")
        for knob in self.knobs.values():
            knob.observe(lambda _change: self.restart_simulation(), names="value")
        self.drop.observe(self._network_changed, names="value")
        self.latency.observe(self._network_changed, names="value")
        for action, action_button in self.buttons.items():
            action_button.on_click(lambda _button, a=action: self.act(a))
        self._player: threading.Thread | None = None
        super().__init__([
            control_row(self.play, self.speed, self.timeline),
            control_row(*self.knobs.values()),
            control_row(self.drop, self.latency),
            control_row(self.node, *[self.buttons[a] for a in ACTIONS[:8]]),
            control_row(self.buttons["transfer"], self.groups, self.buttons["partition"]),
            self.image,
            self.status,
        ])
        self._record()

    # ---- the simulation ---------------------------------------------------------------------------

    def config(self) -> RaftConfig:
        k = {name: knob.value for name, knob in self.knobs.items()}
        return RaftConfig(election_timeout=tuple(k["election"]), heartbeat=k["heartbeat"],
                          tick=min(0.05, k["heartbeat"] / 2), max_batch=k["max_batch"],
                          max_inflight=k["max_inflight"], prevote=k["prevote"], check_quorum=k["check_quorum"])

    def _new_simulation(self) -> Simulation:
        sim = Simulation(self.n, seed=self.seed, config=self.config())
        sim.set_network(drop=self.drop.value, delay=tuple(v / 1000 for v in self.latency.value))
        return sim

    def restart_simulation(self) -> None:
        """Start over with the knobs' config (a bad combination is reported, not applied)."""
        try:
            with self._lock:
                self.sim = self._new_simulation()
                self.frames.clear()
                self._record()
        except ValueError as exc:
            self.status.value = f"not applied: {exc}"

    def advance(self, seconds: float) -> None:
        """Run the simulation ``seconds`` further and show the new moment."""
        with self._lock:
            self.sim.run_for(seconds)
            self._record()

    def act(self, action: str) -> None:
        """One of ACTIONS on the chosen server (heal and request need none; partition takes
        the groups written in the partition box; transfer moves leadership to the server)."""
        i = self.node.value
        with self._lock:
            sim = self.sim
            if action == "crash":
                sim.crash(i)
            elif action == "restart":
                sim.restart(i)
            elif action == "disconnect":
                sim.disconnect(i)
            elif action == "connect":
                sim.connect(i)
            elif action == "isolate":
                sim.partition([i], [j for j in range(self.n) if j != i])
            elif action == "heal":
                sim.heal()
            elif action == "request":
                leader = sim.leader()
                if leader is None:
                    self.status.value = "no leader to take the request"
                    return
                self._requests += 1
                sim.start(leader, f"request {self._requests}")
            elif action == "timeout":
                sim.force_timeout(i)
            elif action == "transfer":
                try:
                    sim.transfer_leadership(i)
                except (RuntimeError, ValueError) as refused:
                    self.status.value = f"transfer refused: {refused}"
                    return
            elif action == "partition":
                try:
                    groups = [[int(member) for member in part.split(",")] for part in self.groups.value.split("|")]
                    sim.partition(*groups)
                except ValueError as refused:
                    self.status.value = f"partition refused: {refused} (write groups as 0,1 | 2,3,4)"
                    return
            else:
                raise ValueError(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")
            self._record()
        target = {"heal": "", "request": "", "partition": self.groups.value}.get(action, f"S{i}")
        self.status.value = f"{action} {target}".strip()

    def _network_changed(self, _change=None) -> None:
        with self._lock:
            self.sim.set_network(drop=self.drop.value, delay=tuple(v / 1000 for v in self.latency.value))

    # ---- frames and the timeline ------------------------------------------------------------------

    def _record(self) -> None:
        frame = self.sim.frame()
        self.frames.append(frame)
        del self.frames[:-MAX_FRAMES]
        self.timeline.max = len(self.frames) - 1
        self.timeline.value = len(self.frames) - 1
        self._show(frame)

    def _show(self, frame: Frame) -> None:
        show_png(self.image, draw_frame(frame))

    def _scrubbed(self, change) -> None:
        if change["new"] == len(self.frames) - 1:
            return
        self.play.value = False  # looking back pauses the run
        self._show(self.frames[change["new"]])
        self.status.value = f"showing t = {self.frames[change['new']].time:.2f} s (press play to continue)"

    def _play_changed(self, change) -> None:
        if change["new"]:
            self._stop.clear()
            self._player = threading.Thread(target=self._run, name="raft-panel-play", daemon=True)
            self._player.start()
        else:
            self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                self.advance(self.speed.value * FRAME_SECONDS)
            except Exception as exc:  # shown, not lost on a background thread
                self.status.value = f"error: {type(exc).__name__}: {exc}"
                self.play.value = False
                return
            self._stop.wait(max(0.0, FRAME_SECONDS - (time.perf_counter() - started)))

    def close(self) -> None:
        self._stop.set()
        super().close()


def studies_png(elections, throughput, round_trip: float, max_inflight: int) -> bytes:
    """Left: the Raft paper's Figure 16 from ``time_to_elect`` (share of trials with a new
    leader within each time, one curve per timeout range). Right: ``throughput_by_batch``
    against its theory, min(offered, batch x in-flight / round trip)."""
    fig = new_figure(width=10.0, height=3.0)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.17, top=0.9, wspace=0.3)
    cdf, batches = fig.subplots(1, 2)
    for label, group in elections.groupby("timeout", sort=False):
        times = np.sort(1000 * group.seconds.to_numpy())
        cdf.step(times, np.arange(1, len(times) + 1) / len(times), where="post", label=f"{label} ms")
    cdf.set_xscale("log")
    cdf.set_xlabel("time without a leader (ms)")
    cdf.set_ylabel("share of trials")
    cdf.set_title("leader crashed: time to elect another (Figure 16)", fontsize=8)
    cdf.legend(fontsize=6, frameon=False)
    sizes = throughput.max_batch.to_numpy()
    batches.plot(sizes, throughput.committed_per_second, "o", label="measured (simulated)")
    grid = np.geomspace(sizes.min(), sizes.max(), 50)
    batches.plot(grid, np.minimum(throughput.offered.iloc[0], grid * max_inflight / round_trip), "--",
                 label="min(offered, batch x in-flight / round trip)")
    batches.set_xscale("log", base=2)
    batches.set_xlabel("max entries per append")
    batches.set_ylabel("entries committed / s")
    batches.set_title(f"one append in flight, {1000 * round_trip:.0f} ms round trip", fontsize=8)
    batches.legend(fontsize=6, frameon=False)
    return png_of(fig)


class RaftStudy(widgets.VBox):
    """Figure 16 and throughput against batch size, computed on a background thread
    (a few seconds), drawn when done."""

    def __init__(self, trials: int = 20):
        check_ranges(RANGES, trials=trials)
        from ..raft import throughput_by_batch, time_to_elect

        self.image = plot_image()
        self.status = widgets.Label(f"running {trials} elections per timeout range, then the batch sizes ...")
        self.result = None
        super().__init__([self.image, self.status])

        def run():
            try:
                elections, throughput = time_to_elect(trials=trials), throughput_by_batch()
                show_png(self.image, studies_png(elections, throughput, round_trip=0.01, max_inflight=1))
                self.result = elections, throughput
                medians = elections.groupby("timeout", sort=False).seconds.median()
                self.status.value = "median time to elect: " + ", ".join(
                    f"{k} ms: {1000 * v:.0f} ms" for k, v in medians.items())
            except Exception as exc:  # shown, not lost on a background thread
                self.status.value = f"error: {type(exc).__name__}: {exc}"

        self.thread = threading.Thread(target=run, name="raft-study", daemon=True)
        self.thread.start()
