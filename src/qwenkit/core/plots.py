"""Figures for reports (matplotlib, Agg backend, PNG). Each function writes one PNG and returns its path."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def line_plot(
    path: str | Path,
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    title: str = "",
    xlabel: str = "step",
    ylabel: str = "",
    bands: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    styles: Mapping[str, str] | None = None,
    logx: bool = False,
    logy: bool = False,
) -> Path:
    """Curves ``{label: (x, y)}``; ``bands[label] = (low, high)`` shades a band (e.g. min/max over seeds).

    ``styles[label]`` is a matplotlib line style ("--", ":", "-."), so curves that coincide stay visible.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    for label, (x, y) in series.items():
        (line,) = ax.plot(x, y, label=label, linewidth=1.6, linestyle=(styles or {}).get(label, "-"))
        if bands and label in bands:
            low, high = bands[label]
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    _finish(ax, title, xlabel, ylabel, logx, logy, legend=len(series) > 1)
    return _save(fig, plt, path)


def bar_plot(
    path: str | Path,
    categories: Sequence[str],
    groups: Mapping[str, Sequence[float]],
    *,
    title: str = "",
    ylabel: str = "",
    logy: bool = False,
    reference: float | None = None,
) -> Path:
    """Grouped bars: one group of bars per category, one colour per key of ``groups``; optional horizontal line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.4, 0.55 * len(categories) * max(1, len(groups))), 4.2), dpi=110)
    positions = np.arange(len(categories))
    width = 0.8 / max(1, len(groups))
    for i, (label, values) in enumerate(groups.items()):
        ax.bar(positions + (i - (len(groups) - 1) / 2) * width, values, width, label=label)
    if reference is not None:
        ax.axhline(reference, color="black", linewidth=0.8, linestyle="--")
    ax.set_xticks(positions, categories, rotation=30 if len(categories) > 4 else 0, ha="right")
    _finish(ax, title, "", ylabel, False, logy, legend=len(groups) > 1)
    return _save(fig, plt, path)


def scatter_plot(
    path: str | Path,
    points: Mapping[str, tuple[float, float]],
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
) -> Path:
    """Labelled points ``{label: (x, y)}``, e.g. one per ablation arm on a two-metric trade-off."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 4.2), dpi=110)
    for label, (x, y) in points.items():
        ax.scatter([x], [y], s=50, label=label)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, 4), fontsize="small")
    ax.margins(0.2)
    _finish(ax, title, xlabel, ylabel, False, False, legend=False)
    return _save(fig, plt, path)


def _finish(ax, title: str, xlabel: str, ylabel: str, logx: bool, logy: bool, legend: bool) -> None:
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if legend:
        ax.legend(fontsize="small")


def _save(fig, plt, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
