"""The report of one RL run: curves of reward, pass rate, clip fraction, entropy, length, KL and MoE routing churn."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from qwenkit.core.plots import line_plot
from qwenkit.core.report import Report

if TYPE_CHECKING:
    from qwenkit.rl.config import RLConfig
    from qwenkit.rl.train import TrainResult

CURVES = [
    ("reward/mean", "mean reward of the rollout batch"),
    ("eval/pass_rate", "greedy pass rate on held-out prompts"),
    ("policy/clip_fraction", "clip fraction (tokens for GRPO, responses for GSPO)"),
    ("policy/entropy", "mean token entropy"),
    ("response/length", "response length (tokens)"),
    ("policy/kl", "k3 KL to the reference"),
    ("moe/route_change", "MoE: (token, layer) pairs routed differently than at rollout"),
]


def finite(values: list[float]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def mean(values: list[float]) -> float:
    values = finite(values)
    return sum(values) / len(values) if values else float("nan")


def write_run_report(result: TrainResult, config: RLConfig) -> None:
    run = result.run
    report = Report(f"qwenkit rl: {config.algorithm.level} on {config.task}")
    report.text(
        f"Model: {config.model.path or f'tiny Qwen3 ({config.model.size}, moe={config.model.moe})'}; "
        f"{config.rollouts} rollout batches of {config.rollout.prompts} prompts x {config.rollout.group_size} "
        f"responses, {config.rollout.num_mini_batches} mini-batches x {config.rollout.num_iterations} iterations; "
        f"clip ({config.algorithm.clip_low:g}, {config.algorithm.clip_high:g}), aggregation "
        f"`{config.algorithm.aggregation}`, rho {config.algorithm.rho:g}, KL {config.algorithm.kl_coef:g}."
    )
    rows = []
    for name, label in CURVES:
        steps, values = run.series(name)
        if not finite(values):
            continue
        path = line_plot(run.plot_path(name.replace("/", "_")), {name: (steps, values)}, title=label, ylabel=name)
        report.image(path, label)
        head, tail = values[: max(1, len(values) // 5)], values[-max(1, len(values) // 5) :]
        rows.append({"metric": name, "first 20%": mean(head), "last 20%": mean(tail)})
    report.heading("Summary")
    if result.sft:
        report.text("Warm start: " + ", ".join(f"{k} = {v:.4g}" for k, v in result.sft.items()))
    report.table(rows, ["metric", "first 20%", "last 20%"])
    if result.samples:
        report.heading("Samples from the last rollout batch")
        report.table([{"prompt": p, "completion": c, "reward": r} for p, c, r in result.samples])
    report.write(run.path)
