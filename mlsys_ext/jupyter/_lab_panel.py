"""``LabPanel``: controls drive a measurement on a background thread; a plot and a summary show it.

Also the one layout every panel's controls and plots use: rows that wrap, sliders with a
track to drag, labels and buttons as wide as their text, plots shown at their natural size."""
from __future__ import annotations

import math
import numbers
import os
import threading
import time

import ipywidgets as widgets

from ._plots import PIXEL_RATIO

LABEL_STYLE = {"description_width": "initial"}  # a label as wide as its text: never cut
SLIDER_WIDTH = "340px"  # the label and readout leave the track 150 px or more to drag


def span(low, high) -> str:
    """'1,000 to 200,000' or '0.0001 to 0.316': a range as help texts and errors show it."""
    return " to ".join(f"{bound:,}" if isinstance(bound, int) else f"{bound:.3g}" for bound in (low, high))


def check_ranges(ranges: dict[str, tuple], **values) -> None:
    """Refuse any value outside its range in ``ranges`` (name: (low, high), both included; int
    bounds take integers only) with a one-line ValueError. Panels call it first: a slider would
    clip such a value silently, and a size past the range could fill memory or stall the panel
    before anything refused it."""
    for name, value in values.items():
        low, high = ranges[name]
        whole = isinstance(low, int) and isinstance(high, int)
        if (isinstance(value, bool) or not isinstance(value, numbers.Integral if whole else numbers.Real)
                or not low <= value <= high):
            raise ValueError(f"{name} must be {'an integer' if whole else 'a number'} from {span(low, high)}, "
                             f"got {value!r}")


def control_row(*controls: widgets.Widget) -> widgets.HBox:
    """Controls side by side, wrapping onto another line where the output is too narrow:
    a row that does not wrap squeezes its sliders' tracks to nothing and hides the rest
    behind a scrollbar. Controls in a row stand 12 px apart (grid-gap is also flex's gap)."""
    return widgets.HBox(list(controls), layout=widgets.Layout(flex_flow="row wrap", align_items="center",
                                                              grid_gap="0 12px"))


def slider(kind: type, description: str, bounds: tuple | None = None, **traits) -> widgets.ValueWidget:
    """A ``kind`` slider (IntSlider, FloatLogSlider, SelectionSlider, a range slider ...)
    with its whole label and a track wide enough to drag; it reports when released.
    ``bounds``: (low, high) of the values, one of a panel's RANGES (a log slider's
    min and max are their logarithms)."""
    if bounds is not None:
        low, high = bounds
        if kind is widgets.FloatLogSlider:
            base = traits.setdefault("base", 10)
            low, high = math.log10(low) / math.log10(base), math.log10(high) / math.log10(base)  # exact for base 10
        traits.update(min=low, max=high)
    return kind(description=description, continuous_update=False, style=LABEL_STYLE,
                layout=widgets.Layout(width=SLIDER_WIDTH), **traits)


def toggles(description: str, options, value) -> widgets.ToggleButtons:
    """Buttons in a row beside their label (a block by default: the label above), each as wide as its text."""
    return widgets.ToggleButtons(options=options, value=value, description=description,
                                 style={**LABEL_STYLE, "button_width": "auto"},
                                 layout=widgets.Layout(display="flex", align_items="center", width="auto"))


def checkbox(description: str, value: bool) -> widgets.Checkbox:
    """A checkbox with its label beside it, not after an empty label's indent."""
    return widgets.Checkbox(value=value, description=description, indent=False, layout=widgets.Layout(width="auto"))


def dropdown(description: str, options, value) -> widgets.Dropdown:
    """A dropdown as wide as its label and longest option."""
    return widgets.Dropdown(options=options, value=value, description=description, style=LABEL_STYLE,
                            layout=widgets.Layout(width="auto"))


def button(description: str, **traits) -> widgets.Button:
    """A button as wide as its text."""
    return widgets.Button(description=description, layout=widgets.Layout(width="auto"), **traits)


def plot_image() -> widgets.Image:
    """The widget a panel's plots show in (through ``show_png``)."""
    return widgets.Image(format="png", layout=widgets.Layout(max_width="none"))


def show_png(image: widgets.Image, png: bytes) -> None:
    """Show ``png`` (drawn at PIXEL_RATIO device pixels per CSS px) at exactly its CSS size:
    a box left to size it stretches it to the output's width, blurring it by a non-integer factor."""
    width = int.from_bytes(png[16:20], "big")  # the IHDR chunk's width, always at this offset
    image.layout.width = f"{width / PIXEL_RATIO:g}px"
    image.value = png


def best_seconds(call, repeats: int = 3, budget: float = 0.02) -> float:
    """The best wall time of up to ``repeats`` calls of ``call``, as many as ``budget`` seconds
    allow (at least one). Warm up first: a first call that compiles or faults in pages is
    no measurement."""
    best, spent, done = math.inf, 0.0, 0
    while done == 0 or (done < repeats and spent < budget):
        start = time.perf_counter()
        call()
        seconds = time.perf_counter() - start
        best, spent, done = min(best, seconds), spent + seconds, done + 1
    return best


def noise_note(contradictions: list[str]) -> str:
    """HTML naming the measured figures that contradict their theory, with the load that
    explains them: such a figure is noise from a busy machine, not a result. Empty when none."""
    if not contradictions:
        return ""
    load = os.getloadavg()[0]
    return (f"<p style='color:#b35900'>noisy, not a result (load average {load:.2f} on {os.cpu_count()} CPUs): "
            f"{'; '.join(contradictions)}. Move a slider to measure again.</p>")


class Superseded(Exception):
    """A newer control change arrived while measuring: the figures being made are stale."""


class LabPanel(widgets.VBox):
    """Base of the labs' panels.

    A subclass passes its controls and implements ``measure(**values)`` (pure:
    it calls the cores and returns a result) and ``draw(result)`` (returns PNG
    bytes and an HTML summary). Every control change measures again on a
    background thread, so the kernel keeps answering widget messages; changes
    that arrive meanwhile are coalesced into one more run with the latest values,
    and a long ``measure`` that calls ``checkpoint()`` between its steps gives up
    its stale run for that one.
    """

    def __init__(self, title: str, controls: dict[str, widgets.ValueWidget]):
        self.controls = controls
        self.plot = plot_image()
        self.summary = widgets.HTML()
        self.status = widgets.Label()
        self.result = None
        self.figure = None  # the last drawing's matplotlib figure, for draw() to reuse
        self._lock = threading.Lock()
        self._running = False
        self._again = False
        self._idle = threading.Event()
        self._idle.set()
        self._warmed: set = set()
        self._shown: set[int] = set()  # id() of each control show() is setting: not a user's move
        for control in controls.values():
            control.observe(self._changed, names="value")
        super().__init__([widgets.HTML(f"<b>{title}</b>"), control_row(*controls.values()),
                          self.plot, self.summary, self.status])
        self._changed()

    def values(self) -> dict:
        return {name: control.value for name, control in self.controls.items()}

    def measure(self, **values):
        raise NotImplementedError

    def draw(self, result) -> tuple[bytes, str]:
        raise NotImplementedError

    def warm_up(self, key, call) -> None:
        """Run ``call`` (a tiny run that makes numba compile, or load its cache) the first
        time ``key`` is seen, saying so in the status, so compiling is never timed."""
        if key not in self._warmed:
            self.status.value = "compiling kernels (first use only) ..."
            call()
            self._warmed.add(key)
            self.status.value = "measuring ..."

    def show(self, **values) -> None:
        """Set controls to values the measurement derived (say, the m and k a capacity and
        target rate imply), so none shows a stale value, without measuring again."""
        for name, value in values.items():
            control = self.controls[name]
            self._shown.add(id(control))
            try:
                control.value = value
            finally:
                self._shown.discard(id(control))

    def checkpoint(self) -> None:
        """Raise ``Superseded`` when a newer change is waiting, so that it is measured next."""
        if self._again:
            raise Superseded

    def wait(self, timeout: float = 60.0) -> bool:
        """Block until the latest values have been measured and drawn (for scripts and tests)."""
        return self._idle.wait(timeout)

    def _changed(self, change=None) -> None:
        if change is not None and id(change["owner"]) in self._shown:
            return
        with self._lock:
            if self._running:
                self._again = True
                return
            self._running = True
            self._idle.clear()
        self.status.value = "measuring ..."
        threading.Thread(target=self._work, name=f"{type(self).__name__}-measure", daemon=True).start()

    def _work(self) -> None:
        while True:
            start = time.perf_counter()
            try:
                result = self.measure(**self.values())
                measured = time.perf_counter()
                png, self.summary.value = self.draw(result)
                show_png(self.plot, png)
                self.result = result
                self.status.value = (f"measured in {1000 * (measured - start):.0f} ms, "
                                     f"drawn in {1000 * (time.perf_counter() - measured):.0f} ms")
            except Superseded:
                pass  # the newer values are measured below
            except Exception as exc:  # shown in the panel: a callback's error would otherwise vanish
                self.status.value = f"error: {type(exc).__name__}: {exc}"
            with self._lock:
                if not self._again:
                    self._running = False
                    self._idle.set()
                    return
                self._again = False
            self.status.value = "measuring ..."  # the newer values: the figures shown are stale
