"""Figures rendered to PNG bytes, off any GUI backend, so background threads can draw."""
from __future__ import annotations

import io


def new_figure(width: float = 6.0, height: float = 2.6):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=90)


def png_of(fig) -> bytes:
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()
