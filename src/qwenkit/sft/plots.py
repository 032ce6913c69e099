"""The two figures of this domain that ``qwenkit.core.plots`` does not draw: reliability diagrams and a gain scatter
with its fitted line. Each writes one PNG (matplotlib, Agg) and returns its path."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from qwenkit.sft.metrics import LineFit


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def reliability_diagram(path: str | Path, panels: Mapping[str, Sequence[Mapping[str, Any]]], *, title: str = "",
                        columns: int = 4) -> Path:
    """One panel per entry (``columns`` per row): bars of accuracy per confidence bin, the diagonal of perfect
    calibration, and the count of predictions in each bin above its bar. ``panels[label]`` holds the bins of
    :func:`qwenkit.sft.metrics.reliability_bins` as dicts."""
    plt = _pyplot()
    columns = max(1, min(columns, len(panels)))
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.2 * rows), dpi=110, squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (label, bins) in zip(axes.flat, panels.items(), strict=False):
        width = bins[0]["upper"] - bins[0]["lower"]
        for b in bins:
            if b["count"]:
                ax.bar(b["lower"], b["accuracy"], width=width, align="edge", color="tab:blue", alpha=0.75,
                       edgecolor="black", linewidth=0.5)
                ax.text(b["lower"] + width / 2, min(1.0, b["accuracy"]) + 0.02, str(b["count"]), ha="center",
                        fontsize="x-small")
        ax.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.1)
        ax.set_title(label, fontsize="small")
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.grid(True, alpha=0.3)
    if title:
        fig.suptitle(title, fontsize="medium")
    return _save(fig, plt, path)


def gain_scatter(path: str | Path, points: Mapping[str, tuple[float, float]], fit: LineFit | None, *,
                 title: str = "", xlabel: str = "", ylabel: str = "") -> Path:
    """Labelled points ``{label: (x, y)}`` with the least-squares line of ``fit`` (when there is one)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 4.4), dpi=110)
    for label, (x, y) in points.items():
        ax.scatter([x], [y], s=40)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, 4), fontsize="x-small")
    if fit is not None and points:
        xs = [x for x, _ in points.values()]
        low, high = min(xs), max(xs)
        ax.plot([low, high], [fit.slope * low + fit.intercept, fit.slope * high + fit.intercept], color="black",
                linewidth=1.0, label=f"slope {fit.slope:.2f}, R² {fit.r_squared:.2f}")
        ax.legend(fontsize="small")
    ax.axhline(0, color="grey", linewidth=0.6)
    ax.axvline(0, color="grey", linewidth=0.6)
    ax.margins(0.15)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return _save(fig, plt, path)


def _save(fig, plt, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
