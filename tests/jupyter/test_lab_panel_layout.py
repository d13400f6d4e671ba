"""The one layout of every panel, headless: the browser's view of it is tests/test_panels_e2e.py."""
import io

import ipywidgets as widgets
import matplotlib
import numpy as np
import pytest
from PIL import Image

from mlsys_ext.jupyter import _text_cache
from mlsys_ext.jupyter._lab_panel import SLIDER_WIDTH, plot_image, show_png
from mlsys_ext.jupyter._plots import CSS_DPI, PIXEL_RATIO, new_figure, png_of
from mlsys_ext.jupyter.bloom_panel import BloomPanel


def test_a_plot_is_drawn_at_twice_its_css_size_and_shown_at_exactly_that_size():
    png = png_of(new_figure(6.0, 2.6))
    image = plot_image()
    show_png(image, png)
    assert int.from_bytes(png[16:20], "big") == 6 * CSS_DPI * PIXEL_RATIO
    assert image.layout.width == f"{6 * CSS_DPI}px" and image.layout.max_width == "none"


def test_a_panel_wraps_its_controls_and_gives_each_slider_its_width_and_whole_label():
    panel = BloomPanel(n=1_000)
    panel.wait()
    row = panel.children[1]
    assert row.layout.flex_flow == "row wrap" and list(row.children) == list(panel.controls.values())
    sliders = [c for c in panel.controls.values() if isinstance(c, widgets.FloatLogSlider | widgets.IntSlider)]
    assert len(sliders) == 4
    assert all(s.layout.width == SLIDER_WIDTH and s.style.description_width == "initial" and not s.continuous_update
               for s in sliders)
    assert panel.plot.layout.width == f"{6 * CSS_DPI}px"


def test_a_plot_png_decodes_to_exactly_the_figure_s_pixels():
    fig = new_figure(2.0, 1.0)
    fig.add_subplot().plot([0, 1], [1, 0], color="tab:orange")
    png = png_of(fig)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), np.asarray(fig.canvas.buffer_rgba()))


needs_text_cache = pytest.mark.skipif(_text_cache.CANVAS is not _text_cache.TextCachingCanvas,
                                      reason=f"matplotlib {matplotlib.__version__}: plain Agg, no text cache")


def _labelled(fig):
    ax = fig.add_subplot()
    ax.plot([0, 1], [1, 0])
    ax.set_title("latency at each step")
    ax.set_xlabel("step")
    ax.set_ylabel("ms")  # rotated by 90 degrees
    ax.text(0.5, 0.5, "note", rotation=30)
    return fig


@needs_text_cache
def test_cached_texts_draw_as_matplotlib_draws_them_to_within_two_pixels():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    cached = _labelled(new_figure(3.0, 2.0))
    png_of(cached)
    plain = _labelled(new_figure(3.0, 2.0))
    FigureCanvasAgg(plain).draw()
    ink = [np.asarray(f.canvas.buffer_rgba())[..., :3].min(axis=2) < 128 for f in (cached, plain)]
    assert abs(int(ink[0].sum()) - int(ink[1].sum())) <= 0.03 * ink[1].sum()  # the same glyphs
    # every dark pixel of the cached drawing within 2 px of a dark plain one (a bitmap is placed
    # at a whole pixel, and one at 30 degrees is rotated as a whole, off by up to 2 px)
    near = np.zeros_like(ink[1])
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            near |= np.roll(ink[1], (dy, dx), axis=(0, 1))
    assert not (ink[0] & ~near).any()


@needs_text_cache
def test_a_text_that_changes_is_rendered_anew_and_one_that_stays_is_drawn_the_same():
    fig = _labelled(new_figure(3.0, 2.0))
    png_of(fig)
    first = np.asarray(fig.canvas.buffer_rgba()).copy()
    png_of(fig)
    assert np.array_equal(first, np.asarray(fig.canvas.buffer_rgba()))
    fig.axes[0].set_title("throughput at each step")
    png_of(fig)
    assert not np.array_equal(first, np.asarray(fig.canvas.buffer_rgba()))
    assert ("throughput at each step" in {key[0] for key in fig.canvas.get_renderer()._texts})
