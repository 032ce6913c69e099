"""The scaling report: log-log curves of test BT loss with the fitted power laws, the fit table, and plain verdicts
on WorldPM's three behaviours computed from the measured numbers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from qwenkit.reward.scaling import CurveFit, ScalingGrid

FLAT_RELATIVE_CHANGE = 0.03
"""A curve whose loss moves by less than 3 % from the smallest to the largest size is called flat (ours)."""


def loglog_plot(path: Path, curves: Sequence[CurveFit], *, title: str, xlabel: str) -> Path:
    """Per-cell mean losses as points and each fitted power law as a dashed line, on log-log axes."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for curve in curves:
        (points,) = ax.plot(curve.x, curve.y, "o-", linewidth=0.8, label=curve.group)
        if curve.fit is not None:
            dense = np.geomspace(min(curve.x), max(curve.x), 60)
            ax.plot(dense, curve.fit.predict(dense), "--", color=points.get_color(), linewidth=1.4,
                    label=f"fit {curve.group}: alpha={curve.fit.alpha:.2f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test BT loss")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _interval(fit) -> str:
    if fit is None:
        return "not fitted (fewer than 4 points)"
    low, high = fit.alpha_interval
    return f"{fit.alpha:.3f} [{low:.3f}, {high:.3f}]"


def verdicts(fits: Sequence[CurveFit]) -> dict[str, str]:
    """One sentence per category, from the numbers: does the loss fall with data, does size matter, is it flat?"""
    out = {}
    for category in sorted({f.category for f in fits}):
        data = [f for f in fits if f.category == category and f.against == "data"]
        model = [f for f in fits if f.category == category and f.against == "model"]
        falling = [f for f in data if f.relative_change < -FLAT_RELATIVE_CHANGE]
        excluded_zero = [f for f in data if f.fit is not None and f.fit.alpha_interval[0] > 0.01]
        parts = [f"loss falls by more than {FLAT_RELATIVE_CHANGE:.0%} from the smallest to the largest data size "
                 f"for {len(falling)} of {len(data)} model sizes"]
        if any(f.fit is not None for f in data):
            parts.append(f"the exponent's 95 % interval excludes 0 for {len(excluded_zero)} of "
                         f"{sum(f.fit is not None for f in data)} fitted curves")
        for curve in model:
            change = curve.relative_change
            size_word = "falls" if change < -FLAT_RELATIVE_CHANGE else ("rises" if change > FLAT_RELATIVE_CHANGE
                                                                         else "stays flat")
            parts.append(f"at {curve.group}, loss {size_word} from the smallest to the largest model "
                         f"({change:+.1%})")
        out[category] = "; ".join(parts) + "."
    return out


def write_scaling_report(grid: ScalingGrid, results: Sequence[dict], fits: Sequence[CurveFit], out: Path,
                         *, title: str = "Reward-model scaling", notes: str = "") -> Path:
    from qwenkit.core.report import Report

    report = Report(title)
    report.text(
        f"{len(results)} cells: model sizes {grid.model_sizes} x data sizes {grid.data_sizes} x seeds {grid.seeds}; "
        f"each cell trains a Bradley-Terry reward model ({grid.epochs:g} epochs, batch {grid.batch_size}) on the "
        "synthetic corpus and measures the test BT loss per category on one shared test set. "
        "Fits: `L(D) = a D^-alpha + c` per model size, `L(N) = b N^-beta + c` at the largest D, with "
        "residual-bootstrap 95 % intervals for the exponent."
    )
    if notes:
        report.text(notes)
    plots = out / "plots"
    for category in sorted({f.category for f in fits}):
        report.heading(category)
        data = [f for f in fits if f.category == category and f.against == "data"]
        report.image(loglog_plot(plots / f"{category}-data.png", data, title=f"{category}: loss vs data",
                                 xlabel="training pairs D"),
                     f"{category}: test BT loss (points: per-cell means over seeds) against training pairs, one line "
                     "per model size; dashed: fitted power laws.")
        model = [f for f in fits if f.category == category and f.against == "model"]
        if model:
            report.image(loglog_plot(plots / f"{category}-model.png", model, title=f"{category}: loss vs model size",
                                     xlabel="non-embedding parameters N"),
                         f"{category}: test BT loss against model size at the largest data size.")
    report.heading("Fits")
    report.table([
        {"category": f.category, "against": f.against, "curve": f.group,
         "exponent [95 % interval]": _interval(f.fit),
         "a": f.fit.a if f.fit else math.nan, "c": f.fit.c if f.fit else math.nan,
         "loss first": f.y[0], "loss last": f.y[-1], "change": f"{f.relative_change:+.1%}"}
        for f in fits
    ])
    report.heading("What this run shows")
    for category, sentence in verdicts(fits).items():
        report.text(f"**{category}**: {sentence}")
    report.heading("Cells")
    report.table([
        {"cell": r["index"], "model": r["model_size"], "N": r["parameters"], "D": r["data_size"], "seed": r["seed"],
         **{f"{c} loss": v["bt_loss"] for c, v in r["by_category"].items()},
         **{f"{c} acc": v["accuracy"] for c, v in r["by_category"].items()}}
        for r in results
    ])
    md, _ = report.write(out)
    return md
