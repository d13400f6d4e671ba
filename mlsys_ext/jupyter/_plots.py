"""Figures rendered to PNG bytes, off any GUI backend, so background threads can draw."""
from __future__ import annotations

import io


def new_figure(width: float = 6.0, height: float = 2.6):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=90)
    # Fixed margins: tight_layout alone costs ~100 ms, half of a slider move's budget.
    fig.subplots_adjust(left=0.12, right=0.98, bottom=0.2, top=0.95)
    return fig


def png_of(fig) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()
