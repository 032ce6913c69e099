"""One SFT run end to end: records from the config, training, evaluation, ``results.json`` and the report."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from qwenkit.core.errors import DataError
from qwenkit.sft.config import EvalConfig, SFTConfig
from qwenkit.sft.data import SFTRecord

EVALUATION_FIELDS = tuple(f"evaluation.{name}" for name in EvalConfig.model_fields)
"""Evaluation settings shape no weights, so a resumed run may change them."""


def records_for(config: SFTConfig) -> tuple[list[SFTRecord], list[SFTRecord]]:
    """(train, eval) records: a toy task split ``train_size`` / ``eval_size``, or the configured files."""
    from qwenkit.sft.loaders import load_dataset_file
    from qwenkit.sft.tasks import make_task

    data = config.data
    if data.task is not None:
        records = make_task(data.task, data.train_size + data.eval_size, seed=config.trainer.seed,
                            **data.difficulty)
        return records[: data.train_size], records[data.train_size:]
    train = load_dataset_file(data.train, data.layout)
    evaluation = load_dataset_file(data.eval, data.layout) if data.eval is not None else []
    if config.target == "rationale":
        missing = [i for i, r in enumerate(train) if r.rationale is None]
        if missing:
            raise DataError(f"{data.train}: {len(missing)} of {len(train)} records (first: record {missing[0]}) "
                            "have no rationale, and target 'rationale' needs one on every record; generate them with "
                            "`qwenkit sft rationales` or use --set target=answer")
    return train, evaluation


def train_and_evaluate(config: SFTConfig, out: str | Path, *, resume: Any = False, quiet: bool | None = None,
                       write_report: bool = True) -> dict[str, Any]:
    """Train, evaluate on the eval records (when any), write ``results.json`` (and the report); return the summary."""
    from qwenkit.core.runs import start_run
    from qwenkit.lm.loading import find_model_source
    from qwenkit.sft.evaluate import evaluate_records, summarize
    from qwenkit.sft.train import train_records

    train, evaluation = records_for(config)
    find_model_source(config.model.path, gguf_file=config.model.gguf_file)
    run = start_run(out, config, resume=resume, may_change=EVALUATION_FIELDS)
    result = train_records(config, train, out, resume=resume, quiet=quiet, run=run)
    # the run's metrics log, not this call's history: a resumed run's earlier steps count too
    _, losses = run.series("loss")
    summary: dict[str, Any] = {"target": config.target, "train_records": len(train), "dropped": result.dropped,
                               "final_loss": losses[-1] if losses else None}
    if evaluation:
        questions = evaluate_records(result.model, result.tokenizer, evaluation, config.target, config.evaluation)
        summary.update(summarize(questions, config.evaluation.n_bins))
        with (run.path / "predictions.jsonl").open("w", encoding="utf-8") as f:
            for q in questions:
                f.write(json.dumps(asdict(q), ensure_ascii=False) + "\n")
    (run.path / "results.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    if write_report:
        write_run_report(run, config, summary)
    return summary


def write_run_report(run, config: SFTConfig, summary: dict[str, Any]) -> None:
    from qwenkit.core.plots import line_plot
    from qwenkit.core.report import Report
    from qwenkit.sft.plots import reliability_diagram

    report = Report(f"qwenkit sft: {config.target} targets")
    report.text(f"Model `{config.model.path}`, {summary['train_records']} training records "
                f"({summary['dropped']} dropped for length), target mode `{config.target}`.")
    steps, losses = run.series("loss")
    if steps:
        report.image(line_plot(run.plot_path("loss"), {"loss": (steps, losses)}, ylabel="target-token loss"),
                     "training loss (mean cross-entropy over target tokens)")
    if "accuracy_sc" in summary:
        keys = ["accuracy_greedy", "accuracy_sc", "ece_sc", "mce_sc", "brier_sc", "ece_token", "mce_token",
                "brier_token"]
        report.table([{"metric": k, "value": summary[k]} for k in keys], ["metric", "value"])
        path = reliability_diagram(run.plot_path("reliability"), {
            "self-consistency": summary["bins_sc"], "token probability": summary["bins_token"]})
        report.image(path, "reliability diagrams: bar = accuracy of the predictions in each confidence bin (count "
                           "above), dashed = perfect calibration")
    report.write(run.path)
