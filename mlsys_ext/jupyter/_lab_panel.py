"""``LabPanel``: controls drive a measurement on a background thread; a plot and a summary show it."""
from __future__ import annotations

import numbers
import threading
import time

import ipywidgets as widgets


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


class LabPanel(widgets.VBox):
    """Base of the labs' panels.

    A subclass passes its controls and implements ``measure(**values)`` (pure:
    it calls the cores and returns a result) and ``draw(result)`` (returns PNG
    bytes and an HTML summary). Every control change measures again on a
    background thread, so the kernel keeps answering widget messages; changes
    that arrive meanwhile are coalesced into one more run with the latest values.
    """

    def __init__(self, title: str, controls: dict[str, widgets.ValueWidget]):
        self.controls = controls
        self.plot = widgets.Image(format="png")
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
        for control in controls.values():
            control.observe(self._changed, names="value")
        super().__init__([widgets.HTML(f"<b>{title}</b>"), widgets.HBox(list(controls.values())),
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

    def wait(self, timeout: float = 60.0) -> bool:
        """Block until the latest values have been measured and drawn (for scripts and tests)."""
        return self._idle.wait(timeout)

    def _changed(self, _change=None) -> None:
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
                self.plot.value, self.summary.value = self.draw(result)
                self.result = result
                self.status.value = f"measured and drawn in {1000 * (time.perf_counter() - start):.0f} ms"
            except Exception as exc:  # shown in the panel: a callback's error would otherwise vanish
                self.status.value = f"error: {type(exc).__name__}: {exc}"
            with self._lock:
                if not self._again:
                    self._running = False
                    self._idle.set()
                    return
                self._again = False
