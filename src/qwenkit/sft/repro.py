"""Quick reproduction of "Rationales Are Not Silver Bullets" at toy scale.

Tiny Qwen3 models are fine-tuned once with answer-only targets and once with rationale+answer targets on every toy
task: modular arithmetic word problems of 1, 2 and 3 steps (the difficulty sweep) and the classification-like
sentiment, topic and paraphrase tasks. Each model is evaluated by greedy accuracy and by self-consistency (10
samples at temperature 0.8, the paper's setting): the majority answer is the prediction and its share the
confidence, and its ECE over 10 bins is the reliability. Per task, the accuracy gain of rationales
(acc_rationale - acc_answer) is plotted against the ECE gain (ECE_answer - ECE_rationale, positive = rationales
calibrate better), with the least-squares line, its slope and R^2 with bootstrap intervals over tasks.

``--full``: three seeds per arm, a 4-step arithmetic task, and LoRA on SmolLM2-135M (the GGUF that set-up installs)
for the arithmetic sweep.
"""

from __future__ import annotations

import json
import math
from typing import Any

from qwenkit.core.repro import Repro, ReproContext

QUICK_TASKS: list[tuple[str, str, dict[str, int]]] = [
    ("arith-1step", "arithmetic", {"steps": 1, "modulus": 10}),
    ("arith-2step", "arithmetic", {"steps": 2, "modulus": 10}),
    ("arith-3step", "arithmetic", {"steps": 3, "modulus": 10}),
    ("sentiment", "sentiment", {}),
    ("topic", "topic", {}),
    ("paraphrase", "paraphrase", {}),
]
FULL_EXTRA_TASKS = [("arith-4step", "arithmetic", {"steps": 4, "modulus": 10})]
QUICK = {"seeds": 1, "steps": 300, "classification_steps": 150, "train_size": 800, "eval_size": 100, "size": "tiny"}
FULL = {"seeds": 3, "steps": 600, "classification_steps": 300, "train_size": 2000, "eval_size": 200, "size": "tiny"}
SMOLLM2 = {"steps": 150, "train_size": 400, "eval_size": 100, "batch_size": 8}


def arm_config(task: str, difficulty: dict[str, int], target: str, *, seed: int, steps: int, train_size: int,
               eval_size: int, size: str, spec: str = "tiny-qwen3", lora: bool = False, batch_size: int = 32,
               lr: float = 5e-3):
    from qwenkit.core.config import load_config
    from qwenkit.sft.config import SFTConfig

    # room for every rationale step and "The answer is <label>." in characters (the tiny tokenizer's unit)
    rationale_tokens = 12 * difficulty.get("steps", 3) + 64
    return load_config(SFTConfig, {
        "model": {"path": spec, "size": size, "seed": seed},
        "lora": {"enabled": lora, "r": 16, "alpha": 32},
        "data": {"task": task, "difficulty": difficulty, "train_size": train_size, "eval_size": eval_size,
                 "max_length": 512},
        "target": target,
        "batch_size": batch_size,
        "trainer": {"max_steps": steps, "lr": lr, "seed": seed},
        "evaluation": {"samples": 10, "temperature": 0.8, "max_new_tokens": rationale_tokens if target == "rationale"
                       else 32, "seed": seed},
    })


def run_arm(label: str, config_data: dict[str, Any], out: str) -> dict[str, Any]:
    """Train and evaluate one (task, target, seed) arm in its own run directory; returns its summary."""
    from qwenkit.sft.config import SFTConfig
    from qwenkit.sft.pipeline import train_and_evaluate

    config = SFTConfig.model_validate(config_data)
    summary = train_and_evaluate(config, out, quiet=True, write_report=False)
    return {"label": label, "target": config.target, "seed": config.trainer.seed, **summary}


def _run_arms(jobs: list[tuple[str, dict[str, Any], str]], threads: int) -> list[dict[str, Any]]:
    """Arms in parallel worker processes, one per ``threads`` usable cores; results in the order of ``jobs``."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from qwenkit.core.system import usable_cores

    workers = max(1, min(len(jobs), usable_cores() // threads))
    if workers == 1:
        return [_run_in_worker(threads, *job) for job in jobs]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_run_in_worker, threads, *job) for job in jobs]
        return [f.result() for f in futures]


def _run_in_worker(threads: int, label: str, config_data: dict[str, Any], out: str) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    return run_arm(label, config_data, out)


def gains(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per task (averaged over seeds): accuracy and ECE of both arms and the gains of rationales."""
    table: dict[str, dict[str, list[float]]] = {}
    for r in results:
        row = table.setdefault(r["label"], {})
        for metric in ("accuracy_sc", "accuracy_greedy", "ece_sc", "ece_token", "brier_sc"):
            row.setdefault(f"{metric}/{r['target']}", []).append(r[metric])
    out: dict[str, dict[str, float]] = {}
    for label, row in table.items():
        mean = {k: sum(v) / len(v) for k, v in row.items()}
        mean["accuracy_gain"] = mean["accuracy_sc/rationale"] - mean["accuracy_sc/answer"]
        mean["ece_gain"] = mean["ece_sc/answer"] - mean["ece_sc/rationale"]
        mean["seeds"] = len(row["accuracy_sc/answer"])
        out[label] = mean
    return out


def _line_verdict(fit) -> str:
    if fit is None:
        return "No line could be fitted (all accuracy gains are equal), so the linear correspondence cannot be judged."
    excludes_zero = fit.slope_interval[0] > 0 or fit.slope_interval[1] < 0
    if excludes_zero and fit.r_squared >= 0.5:
        return (f"The linear correspondence appears at this scale: slope {fit.slope:.2f} (95% bootstrap interval "
                f"{fit.slope_interval[0]:.2f} to {fit.slope_interval[1]:.2f}), R² {fit.r_squared:.2f} "
                f"({fit.r_squared_interval[0]:.2f} to {fit.r_squared_interval[1]:.2f}) over {fit.n_points} tasks.")
    return (f"The linear correspondence does not clearly appear at this scale: slope {fit.slope:.2f} (95% bootstrap "
            f"interval {fit.slope_interval[0]:.2f} to {fit.slope_interval[1]:.2f}), R² {fit.r_squared:.2f} "
            f"({fit.r_squared_interval[0]:.2f} to {fit.r_squared_interval[1]:.2f}) over {fit.n_points} tasks; "
            "the criterion used is a slope interval excluding 0 and R² >= 0.5.")


def run_sft_repro(ctx: ReproContext) -> str:
    from qwenkit.core.report import Report
    from qwenkit.sft.metrics import bootstrap_line_fit
    from qwenkit.sft.plots import gain_scatter, reliability_diagram

    scale = FULL if ctx.full else QUICK
    tasks = QUICK_TASKS + (FULL_EXTRA_TASKS if ctx.full else [])
    jobs = []
    for seed in range(ctx.seed, ctx.seed + scale["seeds"]):
        for label, task, difficulty in tasks:
            for target in ("answer", "rationale"):
                steps = scale["steps"] if task == "arithmetic" else scale["classification_steps"]
                config = arm_config(task, difficulty, target, seed=seed, steps=steps,
                                    train_size=scale["train_size"], eval_size=scale["eval_size"], size=scale["size"])
                out = ctx.run.path / "arms" / f"{label}-{target}-s{seed}"
                jobs.append((label, config.model_dump(mode="json"), str(out)))
    if ctx.full:
        for label, task, difficulty in QUICK_TASKS[:3]:
            for target in ("answer", "rationale"):
                config = arm_config(task, difficulty, target, seed=ctx.seed, steps=SMOLLM2["steps"],
                                    train_size=SMOLLM2["train_size"], eval_size=SMOLLM2["eval_size"], size="tiny",
                                    spec="smollm2", lora=True, batch_size=SMOLLM2["batch_size"], lr=2e-4)
                jobs.append((f"smollm2-lora-{label}", config.model_dump(mode="json"),
                             str(ctx.run.path / "arms" / f"smollm2-{label}-{target}")))
    results = _run_arms(jobs, threads=ctx.threads or 1)
    (ctx.run.path / "arms.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    by_task = gains([r for r in results if not r["label"].startswith("smollm2")])
    points = {label: (row["accuracy_gain"], row["ece_gain"]) for label, row in by_task.items()}
    xs = [p[0] for p in points.values()]
    fit = bootstrap_line_fit(xs, [p[1] for p in points.values()], resamples=2000, seed=ctx.seed) \
        if len(set(xs)) > 1 else None

    report = Report("Rationales Are Not Silver Bullets: toy-scale reproduction")
    report.text(__doc__.split("\n\n", 1)[1].replace("\n", " "))
    report.heading("Accuracy gain against ECE gain")
    report.image(gain_scatter(ctx.run.plot_path("gain_scatter"), points, fit,
                              title="rationale vs answer-only, per task",
                              xlabel="accuracy gain (majority vote)", ylabel="ECE gain (answer - rationale)"),
                 "one point per task: x = accuracy of the rationale-trained model minus the answer-only model "
                 "(self-consistency majority), y = ECE of the answer-only model minus that of the rationale model "
                 "(positive = rationales calibrate better); black = least-squares line")
    report.text(_line_verdict(fit))
    rows = [{"task": label, "seeds": row["seeds"],
             "acc answer": row["accuracy_sc/answer"], "acc rationale": row["accuracy_sc/rationale"],
             "greedy answer": row["accuracy_greedy/answer"], "greedy rationale": row["accuracy_greedy/rationale"],
             "ECE answer": row["ece_sc/answer"], "ECE rationale": row["ece_sc/rationale"],
             "acc gain": row["accuracy_gain"], "ECE gain": row["ece_gain"]} for label, row in by_task.items()]
    report.table(rows, list(rows[0]))
    report.heading("Reliability diagrams (first seed)")
    panels = {f"{r['label']} / {r['target']}": r["bins_sc"] for r in results
              if r["seed"] == ctx.seed and not r["label"].startswith("smollm2")}
    report.image(reliability_diagram(ctx.run.plot_path("reliability"), panels, columns=4),
                 "self-consistency confidence: bars = accuracy per confidence bin (count above), dashed = perfect "
                 "calibration; a bar below the diagonal is over-confidence")
    smol = gains([r for r in results if r["label"].startswith("smollm2")])
    if smol:
        report.heading("SmolLM2-135M with LoRA (arithmetic sweep)")
        report.table([{"task": k, "acc answer": v["accuracy_sc/answer"], "acc rationale": v["accuracy_sc/rationale"],
                       "ECE answer": v["ece_sc/answer"], "ECE rationale": v["ece_sc/rationale"]}
                      for k, v in smol.items()], ["task", "acc answer", "acc rationale", "ECE answer", "ECE rationale"])
    report.write(ctx.run.path)
    (ctx.run.path / "summary.json").write_text(json.dumps({
        "tasks": by_task, "fit": None if fit is None else fit.__dict__, "smollm2": smol}, indent=2), encoding="utf-8")
    if fit is None:
        return "no line: equal accuracy gains"
    slope_ci = "/".join(f"{v:.2f}" for v in fit.slope_interval)
    math_gain = [by_task[t]["accuracy_gain"] for t in by_task if t.startswith("arith")]
    return (f"slope {fit.slope:.2f} [{slope_ci}], R² {fit.r_squared:.2f} over {fit.n_points} tasks; "
            f"arithmetic acc gain {min(math_gain):+.2f}..{max(math_gain):+.2f}"
            if all(math.isfinite(v) for v in math_gain) else f"slope {fit.slope:.2f}")


REPROS = [
    Repro(name="sft-rationales", title="Rationales Are Not Silver Bullets: SFT with and without rationales, "
          "accuracy gain vs ECE gain over task difficulty", run=run_sft_repro, quick_minutes=5.0, order=80),
]
