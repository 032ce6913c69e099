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
    report.disk_usage(run)
    report.write(run.path)


def write_entropy_report(result, out, model: str, compare: str | None, rho: float):
    """Report of :func:`qwenkit.rl.entropy.analyze`: statistics, the entropy CDF, forking tokens, overlap."""
    from qwenkit.core.runs import RunDir

    run = RunDir(out)
    report = Report("Token entropy of generated chains of thought")
    rows = [{"model": model, "tokens": result.tokens, "share H < 0.01": result.share_below_001,
             "80th percentile": result.p80, "mean": result.mean}]
    curves = {"A: " + model: _cdf(result.sorted_entropy)}
    if compare:
        rows.append({"model": compare + " (on A's sequences)", "tokens": result.tokens,
                     "share H < 0.01": result.compare["share_below_001"], "80th percentile": result.compare["p80"],
                     "mean": result.compare["mean"]})
        curves["B: " + compare] = _cdf(result.compare_sorted_entropy)
    report.text("The 80/20 paper reports, for Qwen3-8B chains of thought, over 50% of tokens below 0.01 nats and an "
                "80th percentile of 0.672, and over 86% overlap of the top-20% positions between a base model and its "
                "RLVR-trained version.")
    report.table(rows)
    if compare:
        report.text(f"Overlap of the top-{rho:.0%} entropy positions of A and B: "
                    f"**{result.compare['top_position_overlap']:.1%}** of A's positions.")
    plot = line_plot(run.plot_path("entropy_cdf"), curves, title="entropy CDF over generated tokens",
                     xlabel="entropy (nats)", ylabel="share of tokens")
    report.image(plot, "cumulative distribution of token entropy")
    report.heading("Highest-entropy (forking) tokens")
    report.table([{"entropy": f["entropy"], "context": repr(f["context"]), "token": repr(f["token"])}
                  for f in result.forking])
    return report.write(run.path)[0]


def _cdf(sorted_values: list[float]) -> tuple[list[float], list[float]]:
    n = len(sorted_values)
    step = max(1, n // 400)
    xs = sorted_values[::step]
    return xs, [(i * step + 1) / n for i in range(len(xs))]
