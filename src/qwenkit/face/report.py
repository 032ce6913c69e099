"""The training report: loss curves and the test-split metrics against zero motion."""

from __future__ import annotations

from pathlib import Path

from qwenkit.face.pipeline import EVAL_SPLITS, DatasetView, evaluate_split
from qwenkit.face.train import FaceKit

METRIC_NOTES = ("LVE and FDD are CodeTalker's (squared distances; LVE pooled over frames, FDD signed per sequence); "
                "lve_sqrt_mm is the same per-frame max in millimetres; FFE is our Fourier frequency error. "
                "Lower is better except FDD, whose ideal is 0.")


def write_train_report(run, kit: FaceKit, view: DatasetView) -> Path:
    from qwenkit.core.plots import line_plot
    from qwenkit.core.report import Report

    report = Report("qwenkit face: training")
    report.text(f"Dataset `{view.root}` ({view.dataset}); model style `{kit.config.model.style}`, "
                f"{sum(p.numel() for p in kit.model.parameters()):,} parameters, {kit.num_vertices} vertices.")
    series = {}
    for name in ("loss", "vertex", "velocity", "trend", "contrastive"):
        steps, values = run.series(name)
        if steps:
            series[name] = (steps, values)
    if series:
        plot = line_plot(run.plot_path("losses"), series, title="training losses", xlabel="step", ylabel="value",
                         logy=True)
        report.image(plot, caption="Training loss terms per logged step (normalised motion units, log scale).")
    rows = []
    train = view.load("train")
    for split in EVAL_SPLITS[view.dataset]:
        metrics = evaluate_split(kit, view, split, train=train)
        rows.append({"split": split, **{k: metrics[k] for k in ("lve", "zero_lve", "lve_sqrt_mm", "fdd", "ffe")}})
    report.table(rows, caption=METRIC_NOTES)
    return report.write(run.path)[1]
