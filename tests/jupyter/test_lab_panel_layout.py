"""The one layout of every panel, headless: the browser's view of it is tests/test_panels_e2e.py."""
import io

import ipywidgets as widgets
import numpy as np
from PIL import Image

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
