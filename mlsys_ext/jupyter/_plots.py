"""Figures rendered to PNG bytes, off any GUI backend, so background threads can draw."""
from __future__ import annotations

import struct
import zlib

import numpy as np

CSS_DPI = 90  # CSS px per figure inch: the size a plot shows at, and its fonts' scale
PIXEL_RATIO = 2  # PNG pixels per CSS px: crisp on HiDPI screens, and halved exactly on others
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def new_figure(width: float = 6.0, height: float = 2.6):
    """A figure of ``width`` x ``height`` inches; keep it at most 10 (900 CSS px) to fit an output.
    It lives at the PNG's own resolution: ``savefig`` at another dpi would lay out every text
    again at each drawing, twice (~30 ms)."""
    from matplotlib.figure import Figure

    from ._text_cache import CANVAS  # here: matplotlib takes ~0.3 s to import

    fig = Figure(figsize=(width, height), dpi=CSS_DPI * PIXEL_RATIO)
    CANVAS(fig)
    # Fixed margins: tight_layout alone costs ~100 ms, half of a slider move's budget.
    fig.subplots_adjust(left=0.12, right=0.98, bottom=0.2, top=0.95)
    return fig


def png_of(fig) -> bytes:
    """The figure as a PNG of its RGBA buffer, rows unfiltered and deflated at zlib level 1:
    ~5 ms at 1800 x 540 px, where Pillow (which always chooses a filter per row) took ~20 ms
    and savefig ~28, for about the same bytes (flat colours deflate well unfiltered)."""
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    height, width = rgba.shape[:2]
    rows = np.zeros((height, 1 + 4 * width), np.uint8)  # each row: filter type 0, then its pixels
    rows[:, 1:] = rgba.reshape(height, -1)
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8 bits per sample, RGBA, no interlace
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows, 1)) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def panel_axes(figure, columns: int, width: float, height: float, **margins):
    """(figure, axes) for a panel's next drawing: ``figure`` emptied of its data, or a new
    one with ``columns`` axes side by side. Building axes and their ticks is about half
    of a three-plot drawing (~70 ms), so panels keep theirs between slider moves."""
    if figure is None:
        from matplotlib import rc_context

        figure = new_figure(width, height)
        figure.subplots_adjust(**margins)
        with rc_context({"axes.titley": 1.0}):  # a fixed title height: placing it clear of the ticks costs ~15 ms
            axes = figure.subplots(1, columns, squeeze=False)[0]
        for ax in axes:
            ax.locator_params(nbins=4)  # every tick label is text to lay out and render: the most costly part
            ax.tick_params(labelsize=7)
        return figure, figure.axes
    for ax in figure.axes:
        for container in [*ax.containers]:  # errorbar and bar groups, which legends list by themselves
            container.remove()
        for artist in [*ax.lines, *ax.collections, *ax.patches, *ax.texts, *ax.images]:
            artist.remove()
        if ax.get_legend() is not None:
            ax.get_legend().remove()
        ax.set_title("")
        ax.set_prop_cycle(None)  # colours start over, as on a new axes
        ax.set_xscale("linear")
        ax.set_yscale("linear")
        ax.locator_params(nbins=4)  # setting a scale brings back the default ~10 ticks
        ax.relim()
        ax.set_autoscale_on(True)
    return figure, figure.axes


def plain_log_scale(ax, which: str = "y") -> None:
    """Put ``ax``'s ``which`` ("x" or "y") axis on a log scale with plain tick labels
    ("0.001", "1e-05") and no minor ticks: mathtext powers of ten cost ~50 ms to render,
    and a log axis' ~100 minor ticks ~40 ms."""
    from matplotlib.ticker import FuncFormatter, NullLocator

    getattr(ax, f"set_{which}scale")("log")
    axis = getattr(ax, f"{which}axis")
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_locator(NullLocator())
