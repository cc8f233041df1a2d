"""Matplotlib on the Agg backend (no display), one style for every figure of the report."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DPI = 110  # PNG resolution: a 6.4-inch-wide figure is 704 pixels
EPOCH_LABEL = "epoch (0 = before training)"
FRACTION = "fraction of instances (0-1)"
COLORS = {
    "acc": "#c44e52",
    "strict": "#4c72b0",
    "random": "#8172b2",
    "lower": "#55a868",
    "null": "#dd8452",
    "trivial": "#55a868",
    "in-between": "#ccb974",
    "impossible": "#c44e52",
}

# text.parse_math off: run and class names are free text, and '$' in one is not TeX
plt.rcParams.update(
    {"font.size": 9, "axes.grid": True, "grid.alpha": 0.3, "text.parse_math": False}
)


def figure(ncols: int = 1, nrows: int = 1, width: float = 6.4, height: float = 3.8, **kw):
    """A figure and its axes (squeezed as plt.subplots does)."""
    return plt.subplots(nrows, ncols, figsize=(width, height), **kw)


def save(fig, folder: Path, name: str) -> str:
    """Write `fig` as folder/name (PNG), close it, return the name."""
    fig.tight_layout()
    fig.savefig(folder / name, dpi=DPI)
    plt.close(fig)
    return name
