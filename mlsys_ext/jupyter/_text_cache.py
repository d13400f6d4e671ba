"""An Agg canvas that renders each distinct text once, for the panels' repeated drawings."""
from __future__ import annotations

import math

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg, get_hinting_flag
from matplotlib.font_manager import fontManager, get_font


class TextCachingRenderer(RendererAgg):
    """Agg that keeps each text's rendered bitmap for the next drawing. A panel redraws the
    same titles, axis labels and most tick labels at every slider move, and matplotlib
    lays out and renders every glyph of each again (two thirds of a three-plot drawing,
    ~90 ms). The bitmap is placed at a whole pixel, as matplotlib did before 3.11."""

    MAX_TEXTS = 2048  # a few panels' worth of labels; beyond it the cache starts over

    def __init__(self, width, height, dpi):
        super().__init__(width, height, dpi)
        self._texts = {}
        self._heights = {}

    def _get_font_height_metrics(self, prop):
        """(ascent, descent, line gap) of ``prop``'s font in pixels, which matplotlib asks a
        renderer for before reading them from the font's tables at every text's layout."""
        if prop not in self._heights:
            font = get_font(fontManager._find_fonts_by_props(prop))
            table = font.get_sfnt_table("OS/2")
            keys = ("sTypoLineGap", "sTypoAscender", "sTypoDescender")
            if table is None:
                table, keys = font.get_sfnt_table("hhea"), ("lineGap", "ascent", "descent")
            if table is None:
                return None, None, None  # matplotlib measures the font instead
            scale = prop.get_size_in_points() * self.dpi / 72 / font.get_sfnt_table("head")["unitsPerEm"]
            gap, ascent, descent = (table[key] * scale for key in keys)
            self._heights[prop.copy()] = ascent, -descent, gap
        return self._heights[prop]

    def draw_text(self, gc, x, y, s, prop, angle, ismath=False, mtext=None):
        if ismath or not gc.get_antialiased() or (
                mtext is not None and (mtext.get_fontfeatures() or mtext.get_language())):
            return super().draw_text(gc, x, y, s, prop, angle, ismath, mtext)
        key = s, prop, get_hinting_flag()  # FontProperties compare by the properties they hold
        if key not in self._texts:
            if len(self._texts) >= self.MAX_TEXTS:
                self._texts.clear()
            font = self._prepare_font(prop)
            font.set_text(s, 0, flags=key[2])  # unrotated: draw_text_image rotates the bitmap
            font.draw_glyphs_to_bitmap(antialiased=True)
            x_offset, y_offset = font.get_bitmap_offset()
            self._texts[s, prop.copy(), key[2]] = (np.array(font.get_image()), x_offset / 64, y_offset / 64,
                                                    font.get_descent() / 64)
        bitmap, x_offset, y_offset, descent = self._texts[key]
        angle_radians = math.radians(angle)
        self._renderer.draw_text_image(bitmap, round(x + x_offset + descent * math.sin(angle_radians)),
                                       round(y + y_offset + descent * math.cos(angle_radians)) + 1, angle, gc)


class TextCachingCanvas(FigureCanvasAgg):
    def get_renderer(self):
        size = (*self.get_width_height(physical=True), self.figure.dpi)
        if self._lastKey != size:
            self.renderer = TextCachingRenderer(*size)
            self._lastKey = size
        return self.renderer


# It draws through Agg's private text entry points as matplotlib 3.11 has them; on any other
# version, plain Agg (slower, never wrong).
CANVAS = TextCachingCanvas if matplotlib.__version__.startswith("3.11.") else FigureCanvasAgg
