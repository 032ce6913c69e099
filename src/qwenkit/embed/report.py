"""Report pieces shared by ``qwenkit embed train/eval`` and the reproduction: result tables and the nDCG-vs-dim plot."""

from __future__ import annotations

from collections.abc import Mapping

from qwenkit.core.plots import line_plot
from qwenkit.core.report import Report
from qwenkit.core.runs import RunDir

Curve = Mapping[int, Mapping[str, float]]


def result_rows(results: Mapping[str, Mapping[str, Curve]]) -> list[dict[str, object]]:
    """One row per (system, task) at the full dimension: nDCG@10, MRR@10, R@100."""
    rows = []
    for system, tasks in results.items():
        for task, curve in tasks.items():
            full = curve[max(curve)]
            rows.append({"system": system, "task": task, "dim": max(curve), "nDCG@10": full["ndcg@10"],
                         "MRR@10": full["mrr@10"], "R@100": full["recall@100"]})
    return rows


def add_results(report: Report, run: RunDir, results: Mapping[str, Mapping[str, Curve]], *,
                plot_name: str = "ndcg_vs_dim") -> None:
    """A table of every system, then one nDCG@10-vs-Matryoshka-dim plot per task."""
    report.table(result_rows(results), ["system", "task", "dim", "nDCG@10", "MRR@10", "R@100"], float_format="{:.3f}")
    task_names = sorted({t for tasks in results.values() for t in tasks})
    for task in task_names:
        series = {system: (sorted(tasks[task]), [tasks[task][d]["ndcg@10"] for d in sorted(tasks[task])])
                  for system, tasks in results.items() if task in tasks and len(tasks[task]) > 1}
        if not series:
            continue
        path = line_plot(run.plot_path(f"{plot_name}_{task}"), series, title=f"{task}: nDCG@10 vs Matryoshka dim",
                         xlabel="embedding dimension (truncated, re-normalised)", ylabel="nDCG@10", logx=True)
        report.image(path, f"{task}: nDCG@10 against the Matryoshka dimension")
