"""The ``%cluster`` panel: live actor table, fault buttons, network sliders, rates per link,
shared memory held, message rate."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import ipywidgets as widgets
import pandas as pd

from ..cluster import Cluster, ClusterError
from ._lab_panel import button, control_row, plot_image, show_png, slider
from ._plots import panel_axes, png_of

ACTIONS = ("kill", "restart", "pause", "resume")
RATE_WINDOW = 60  # seconds of message rates drawn
MAX_DELAY_MS = 1000  # the delay slider's top, and the most %cluster net --delay accepts


def rate_by_fate(trace, now: float, seconds: int = RATE_WINDOW):
    """Per-second counts of messages sent and delivered (from ``cluster.trace()``) over the last ``seconds``."""
    start = max(int(now) - seconds + 1, 0)
    span = int(now) - start + 1
    sent = [0] * span
    delivered = [0] * span
    for t, fate in zip(trace["time"], trace["fate"]):
        i = int(t) - start
        if 0 <= i < span and fate != "duplicated":
            sent[i] += 1
            if fate != "dropped":
                delivered[i] += 1
    return list(range(start, start + span)), sent, delivered


def render_rate_png(seconds_ago, sent, delivered, drop: float, figure=None) -> tuple[bytes, object]:
    """Bars: messages sent per second; line: delivered; dashed: what theory expects, sent x (1 - drop).
    Also the figure, which the next drawing reuses (see ``panel_axes``)."""
    fig, (ax,) = panel_axes(figure, 1, 6.0, 2.2, left=0.12, right=0.98, bottom=0.2, top=0.95)
    ax.bar(seconds_ago, sent, width=1.0, color="#c8c8c8", label="sent")
    ax.plot(seconds_ago, delivered, color="#1f77b4", label="delivered (measured)")
    ax.plot(seconds_ago, [s * (1.0 - drop) for s in sent], "--", color="#d62728",
            label=f"expected: sent x (1 - {drop:g})")
    ax.set_xlim(-RATE_WINDOW + 0.5, 0.5)  # a fixed window: an idle cluster's plot is the same each second
    ax.set_xlabel("seconds before now")
    ax.set_ylabel("messages / s")
    ax.set_ylim(bottom=0)  # never negative: with no traffic, ticks down to -0.05 pushed the label out of the figure
    ax.legend(loc="upper left", fontsize=7, frameon=False)
    return png_of(fig), fig


class LinkMeter:
    """Messages and bytes per second on each link, between successive readings of ``cluster.links()``."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self._last = None  # (links indexed by src and dst, monotonic time) of the previous reading

    def read(self, top: int = 6) -> pd.DataFrame:
        """src, dst, msgs_per_s, bytes_per_s of the ``top`` busiest links (by bytes) that carried
        messages since the last reading (none on the first)."""
        now, links = time.monotonic(), self.cluster.links().set_index(["src", "dst"])
        before, then = self._last or (links, now)  # the first reading: nothing carried since
        self._last = links, now
        rates = (links - before.reindex(links.index, fill_value=0)) / max(now - then, 1e-9)
        rates.columns = ["msgs_per_s", "bytes_per_s"]
        rates = rates[rates.msgs_per_s > 0]
        return rates.sort_values(["bytes_per_s", "msgs_per_s"], ascending=False).head(top).reset_index()


def byte_rate(bytes_per_s: float) -> str:
    """``12.3 MB/s``: decimal units, as link speeds are written."""
    for unit, size in (("GB/s", 1e9), ("MB/s", 1e6), ("kB/s", 1e3)):
        if bytes_per_s >= size:
            return f"{bytes_per_s / size:.1f} {unit}"
    return f"{bytes_per_s:.0f} B/s"


def shared_memory_text(cluster: Cluster) -> str:
    try:
        held = cluster.shared_memory()
    except ClusterError as exc:
        return str(exc)
    return (f"shared memory held: {held.bytes / 2**20:,.1f} MiB in {held.segments} segment{'s' * (held.segments != 1)} "
            f"in use, {held.pooled_bytes / 2**20:,.1f} MiB pooled for the next messages")


def links_html(rates: pd.DataFrame, shared: str) -> str:
    if rates.empty:
        return f"<p>no messages since the last refresh; {shared}</p>"
    rows = "".join(f"<tr><td>{r.src} &rarr; {r.dst}</td><td>{r.msgs_per_s:,.0f}</td><td>{byte_rate(r.bytes_per_s)}</td></tr>"
                   for r in rates.itertuples())
    return (f"<table style='border-spacing: 10px 0'><tr><th>busiest links</th><th>msgs/s</th><th>bytes/s</th></tr>"
            f"{rows}</table><p>{shared}</p>")


class ClusterPanel(widgets.VBox):
    """Actor table refreshed live, kill/restart/pause/resume buttons, drop and delay sliders,
    the busiest links' messages and bytes per second, and the shared memory held.

    Actions run on a background thread so the kernel keeps answering widget
    messages; sliders only report when released (``continuous_update=False``).
    """

    def __init__(self, cluster: Cluster, refresh_interval: float | None = 1.0):
        """``refresh_interval``: seconds between redraws besides those on changes (None: changes only)."""
        self.cluster = cluster
        self.table = widgets.HTML()
        self.links = widgets.HTML()
        self._meter = LinkMeter(cluster)
        self.actor = widgets.Dropdown(description="actor", options=cluster.actors)
        self.buttons = {a: button(a) for a in ACTIONS}
        faults = cluster.network()["default"]
        self.drop = slider(widgets.FloatSlider, "drop", value=faults.drop, min=0.0, max=1.0, step=0.01,
                           readout_format=".2f")
        self.delay = slider(widgets.IntRangeSlider, "delay ms", value=[round(d * 1000) for d in faults.delay], min=0,
                            max=MAX_DELAY_MS)
        self.plot = plot_image()
        self.message = widgets.Label()
        self.last_action = None
        self._figure = None  # the rate plot's, reused by each drawing
        self._drawn = None  # what the rate plot shows: a redraw of the same is skipped (~40 ms of the kernel's)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="cluster-panel")
        for action, action_button in self.buttons.items():
            action_button.on_click(lambda _b, a=action: self.act(a))
        self.drop.observe(self._apply_network, names="value")
        self.delay.observe(self._apply_network, names="value")
        super().__init__([
            self.table,
            control_row(self.actor, *self.buttons.values()),
            control_row(self.drop, self.delay),
            self.links,
            self.plot,
            self.message,
        ])
        self._stop = threading.Event()
        # Listeners run on the thread that changed the cluster (often its router):
        # they only flag the change, and the refresher thread redraws.
        self._dirty = threading.Event()
        self._unsubscribe = cluster.on_change(lambda _c, _e: self._dirty.set())
        self.refresh()
        threading.Thread(target=self._refresh_loop, args=(refresh_interval,), daemon=True,
                         name="cluster-panel-refresh").start()

    def act(self, action: str):
        """Run ``cluster.<action>(selected actor)`` off the kernel's main thread."""
        name = self.actor.value
        if not name:
            self.message.value = "no actor selected"
            return None
        self.message.value = f"{action} {name} ..."
        self.last_action = self._executor.submit(self._run_action, action, name)
        return self.last_action

    def _run_action(self, action: str, name: str) -> None:
        try:
            getattr(self.cluster, action)(name)
            self.message.value = f"{action} {name}: done"
        except Exception as exc:
            self.message.value = f"{action} {name} failed: {exc}"
        self.refresh()

    def _apply_network(self, _change=None) -> None:
        lo, hi = self.delay.value
        try:
            self.cluster.set_network(drop=self.drop.value, delay=(lo / 1000.0, hi / 1000.0))
            self.message.value = f"network: drop {self.drop.value:.2f}, delay {lo}-{hi} ms"
        except Exception as exc:
            self.message.value = f"network not changed: {exc}"

    def refresh(self) -> None:
        """Redraw the table and the message-rate plot from the cluster's state."""
        if self.cluster.stopped:
            self.table.value = "<i>the cluster is stopped</i>"
            return
        names = self.cluster.actors
        if list(self.actor.options) != names:
            chosen = self.actor.value  # new options would reset it to the first, or leave it blank
            self.actor.options = names
            self.actor.value = chosen if chosen in names else (names[0] if names else None)
        self.table.value = self.cluster.status().to_html(index=False, border=0)
        self.links.value = links_html(self._meter.read(), shared_memory_text(self.cluster))
        now = self.cluster.elapsed()
        seconds, sent, delivered = rate_by_fate(self.cluster.trace(), now)
        shown = ([second - int(now) for second in seconds], sent, delivered, self.drop.value)
        if shown != self._drawn:
            png, self._figure = render_rate_png(*shown, figure=self._figure)
            show_png(self.plot, png)
            self._drawn = shown

    def _refresh_loop(self, interval: float | None) -> None:
        """Redraw on every change, and every ``interval`` seconds (None: on changes only)."""
        while not self._stop.is_set():
            self._dirty.wait(interval)
            self._dirty.clear()
            if self._stop.is_set():
                return
            try:
                self.refresh()
            except Exception as exc:  # the panel must outlive a transient error
                self.message.value = f"refresh failed: {exc}"
            if self.cluster.stopped:
                return

    def close(self) -> None:
        self._stop.set()
        self._dirty.set()
        self._unsubscribe()
        self._executor.shutdown(wait=False)
        super().close()
