"""Reproductions of "Rationales Are Not Silver Bullets" at toy scale, in two quick halves and one full study.

Tiny Qwen3 models are fine-tuned once with answer-only targets and once with rationale+answer targets on toy
tasks, and each model is evaluated by greedy accuracy and by self-consistency (10 samples at temperature 0.8, the
paper's setting): the majority answer is the prediction and its share the confidence, and its ECE over 10 bins is
the reliability. Per task, the accuracy gain of rationales (acc_rationale - acc_answer) is plotted against the ECE
gain (ECE_answer - ECE_rationale, positive = rationales calibrate better), with the least-squares line, its slope
and R^2 with bootstrap intervals over tasks.

- ``sft-rationales`` (quick): the difficulty sweep, modular arithmetic word problems of 1 and of 3 steps.
- ``sft-rationales-classify`` (quick): the classification-like sentiment, topic and paraphrase tasks.
  The two halves together are the paper's spectrum; each alone fits ~90 s on 2 idle cores, and
  ``benchmarks/sft_repro.py`` runs both and fits the line over all six tasks.
- ``sft-rationales --full``: the whole study, every task of both halves with two seeds per arm, and LoRA on
  SmolLM2-135M (the GGUF that set-up installs) with and without rationales on 1-step arithmetic (a small check:
  a 135M model costs ~8 CPU-s per LoRA step here, so it gets 12 steps and 16 evaluation questions). Sized to
  ~40 minutes on this shared machine (load average ~12 on 2 cores), which is what bounds the seeds.
  ``sft-rationales-classify --full``: the classification half with two seeds.
"""

from __future__ import annotations

import json
import math
from typing import Any

from qwenkit.core.repro import Repro, ReproContext

ARITHMETIC_TASKS: list[tuple[str, str, dict[str, int]]] = [
    ("arith-1step", "arithmetic", {"steps": 1, "modulus": 10}),
    ("arith-3step", "arithmetic", {"steps": 3, "modulus": 10}),
]
CLASSIFICATION_TASKS: list[tuple[str, str, dict[str, int]]] = [
    ("sentiment", "sentiment", {}),
    ("topic", "topic", {}),
    ("paraphrase", "paraphrase", {}),
]
QUICK = {"seeds": 1, "steps": 250, "classification_steps": 150, "train_size": 800, "eval_size": 100, "size": "tiny",
         "batch_size": 32}
FULL = {**QUICK, "seeds": 2}
SMOLLM2 = {"steps": 12, "train_size": 200, "eval_size": 16, "batch_size": 4, "samples": 3, "lr": 1e-3}


def arm_config(task: str, difficulty: dict[str, int], target: str, *, seed: int, steps: int, train_size: int,
               eval_size: int, size: str, spec: str = "tiny-qwen3", lora: bool = False, batch_size: int = 16,
               lr: float = 5e-3, samples: int = 10):
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
        "evaluation": {"samples": samples, "temperature": 0.8, "max_new_tokens": rationale_tokens
                       if target == "rationale" else 32, "seed": seed},
    })


def run_arm(label: str, config_data: dict[str, Any], out: str) -> dict[str, Any]:
    """Train and evaluate one (task, target, seed) arm in its own run directory; returns its summary.

    A study started again into the same directory repeats only unfinished arms: an arm whose directory holds
    ``results.json`` written for this exact config is read back, and a killed arm resumes from its checkpoint.
    """
    from pathlib import Path

    import yaml

    from qwenkit.sft.config import SFTConfig
    from qwenkit.sft.pipeline import train_and_evaluate

    config = SFTConfig.model_validate(config_data)
    results, saved = Path(out) / "results.json", Path(out) / "config.yaml"
    if results.is_file() and saved.is_file() and \
            yaml.safe_load(saved.read_text(encoding="utf-8")) == config.model_dump(mode="json"):
        summary = json.loads(results.read_text(encoding="utf-8"))
    else:
        results.unlink(missing_ok=True)
        resume = "auto" if (Path(out) / "checkpoints").is_dir() else False
        summary = train_and_evaluate(config, out, resume=resume, quiet=True, write_report=False)
    return {"label": label, "target": config.target, "seed": config.trainer.seed, **summary}


def gains(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per task (averaged over seeds): accuracy and ECE of both arms, the gains of rationales, and the gains'
    standard deviation over seeds (0 with one seed; the two arms of one seed are paired)."""
    table: dict[str, dict[str, list[float]]] = {}
    paired: dict[str, dict[int, dict[str, dict[str, Any]]]] = {}
    for r in results:
        row = table.setdefault(r["label"], {})
        for metric in ("accuracy_sc", "accuracy_greedy", "ece_sc", "ece_token", "brier_sc"):
            row.setdefault(f"{metric}/{r['target']}", []).append(r[metric])
        paired.setdefault(r["label"], {}).setdefault(r["seed"], {})[r["target"]] = r
    out: dict[str, dict[str, float]] = {}
    for label, row in table.items():
        mean = {k: sum(v) / len(v) for k, v in row.items()}
        mean["accuracy_gain"] = mean["accuracy_sc/rationale"] - mean["accuracy_sc/answer"]
        mean["ece_gain"] = mean["ece_sc/answer"] - mean["ece_sc/rationale"]
        pairs = [p for p in paired[label].values() if len(p) == 2]
        mean["accuracy_gain_sd"] = _sd([p["rationale"]["accuracy_sc"] - p["answer"]["accuracy_sc"] for p in pairs])
        mean["ece_gain_sd"] = _sd([p["answer"]["ece_sc"] - p["rationale"]["ece_sc"] for p in pairs])
        mean["seeds"] = len(row["accuracy_sc/answer"])
        out[label] = mean
    return out


def _sd(values: list[float]) -> float:
    """Sample standard deviation (n - 1); 0 for fewer than two values."""
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _line_verdict(fit) -> str:
    if fit is None:
        return "No line could be fitted (all accuracy gains are equal), so the linear correspondence cannot be judged."
    if fit.n_points < 3:
        return (f"Slope {fit.slope:.2f} through {fit.n_points} tasks: two points fit a line exactly (R² = 1), so the "
                "linear correspondence is not judged here; see the line over all tasks.")
    excludes_zero = fit.slope_interval[0] > 0 or fit.slope_interval[1] < 0
    if excludes_zero and fit.r_squared >= 0.5:
        return (f"The linear correspondence appears at this scale: slope {fit.slope:.2f} (95% bootstrap interval "
                f"{fit.slope_interval[0]:.2f} to {fit.slope_interval[1]:.2f}), R² {fit.r_squared:.2f} "
                f"({fit.r_squared_interval[0]:.2f} to {fit.r_squared_interval[1]:.2f}) over {fit.n_points} tasks.")
    return (f"The linear correspondence does not clearly appear at this scale: slope {fit.slope:.2f} (95% bootstrap "
            f"interval {fit.slope_interval[0]:.2f} to {fit.slope_interval[1]:.2f}), R² {fit.r_squared:.2f} "
            f"({fit.r_squared_interval[0]:.2f} to {fit.r_squared_interval[1]:.2f}) over {fit.n_points} tasks; "
            "the criterion used is a slope interval excluding 0 and R² >= 0.5.")


def fit_gain_line(by_task: dict[str, dict[str, float]], seed: int = 0):
    """The bootstrap line of ECE gain on accuracy gain over tasks; None when all accuracy gains are equal."""
    from qwenkit.sft.metrics import bootstrap_line_fit

    xs = [row["accuracy_gain"] for row in by_task.values()]
    if len(set(xs)) < 2:
        return None
    return bootstrap_line_fit(xs, [row["ece_gain"] for row in by_task.values()], resamples=2000, seed=seed)


def _study_jobs(ctx: ReproContext, tasks, scale: dict[str, Any], smollm2: bool) -> list[tuple[str, dict, str]]:
    jobs = []
    for seed in range(ctx.seed, ctx.seed + scale["seeds"]):
        for label, task, difficulty in tasks:
            for target in ("answer", "rationale"):
                steps = scale["steps"] if task == "arithmetic" else scale["classification_steps"]
                config = arm_config(task, difficulty, target, seed=seed, steps=steps, train_size=scale["train_size"],
                                    eval_size=scale["eval_size"], size=scale["size"], batch_size=scale["batch_size"])
                out = ctx.run.path / "arms" / f"{label}-{target}-s{seed}"
                jobs.append((label, config.model_dump(mode="json"), str(out)))
    if smollm2:
        for label, task, difficulty in ARITHMETIC_TASKS[:1]:
            for target in ("answer", "rationale"):
                config = arm_config(task, difficulty, target, seed=ctx.seed, steps=SMOLLM2["steps"],
                                    train_size=SMOLLM2["train_size"], eval_size=SMOLLM2["eval_size"], size="tiny",
                                    spec="smollm2", lora=True, batch_size=SMOLLM2["batch_size"], lr=SMOLLM2["lr"],
                                    samples=SMOLLM2["samples"])
                jobs.append((f"smollm2-lora-{label}", config.model_dump(mode="json"),
                             str(ctx.run.path / "arms" / f"smollm2-{label}-{target}")))
    return jobs


def run_study(ctx: ReproContext, tasks, scale: dict[str, Any], *, title: str, what: str,
              smollm2: bool = False) -> str:
    """Every (task, target, seed) arm of ``tasks`` at ``scale``, the gain scatter with its line, the table, the
    reliability diagrams and (with ``smollm2``) the SmolLM2-135M LoRA arms; writes the report, ``arms.json`` and
    ``summary.json`` into ``ctx.run.path`` and returns the one-line summary."""
    from qwenkit.core.parallel import run_in_processes
    from qwenkit.core.report import Report
    from qwenkit.sft.plots import gain_scatter, reliability_diagram

    results = run_in_processes(run_arm, _study_jobs(ctx, tasks, scale, smollm2), threads=ctx.threads or 1)
    (ctx.run.path / "arms.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    by_task = gains([r for r in results if not r["label"].startswith("smollm2")])
    fit = fit_gain_line(by_task, ctx.seed)

    report = Report(title)
    report.text(what)
    report.text(f"Scale: {scale['seeds']} seed(s) per arm, tiny Qwen3 `{scale['size']}` from scratch, "
                f"{scale['train_size']} training records, {scale['steps']} steps (arithmetic) or "
                f"{scale['classification_steps']} steps (classification) of batch {scale['batch_size']}, lr 5e-3 "
                f"cosine with 3% warm-up; {scale['eval_size']} held-out questions, greedy and 10 samples at "
                "temperature 0.8.")
    report.heading("Accuracy gain against ECE gain")
    points = {label: (row["accuracy_gain"], row["ece_gain"]) for label, row in by_task.items()}
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
             "acc gain": row["accuracy_gain"], "acc gain sd": row["accuracy_gain_sd"],
             "ECE gain": row["ece_gain"], "ECE gain sd": row["ece_gain_sd"]} for label, row in by_task.items()]
    report.table(rows, list(rows[0]))
    report.text("acc = self-consistency (majority vote) accuracy, greedy = greedy-decoding accuracy; gains are "
                "means over seeds, sd their standard deviation over seeds (0 with one seed).")
    report.heading("Reliability diagrams (first seed)")
    panels = {f"{r['label']} / {r['target']}": r["bins_sc"] for r in results
              if r["seed"] == ctx.seed and not r["label"].startswith("smollm2")}
    report.image(reliability_diagram(ctx.run.plot_path("reliability"), panels, columns=4),
                 "self-consistency confidence: bars = accuracy per confidence bin (count above), dashed = perfect "
                 "calibration; a bar below the diagonal is over-confidence")
    smol = gains([r for r in results if r["label"].startswith("smollm2")])
    if smol:
        report.heading("SmolLM2-135M with LoRA (arithmetic)")
        report.text(f"LoRA r=16 on the attention projections of the dequantised SmolLM2-135M-Instruct GGUF, "
                    f"{SMOLLM2['train_size']} training records, {SMOLLM2['steps']} steps of batch "
                    f"{SMOLLM2['batch_size']}, lr {SMOLLM2['lr']:g} cosine; {SMOLLM2['eval_size']} held-out questions, "
                    f"{SMOLLM2['samples']} self-consistency samples at temperature 0.8, one seed.")
        report.table([{"task": k, "acc answer": v["accuracy_sc/answer"], "acc rationale": v["accuracy_sc/rationale"],
                       "greedy answer": v["accuracy_greedy/answer"], "greedy rationale": v["accuracy_greedy/rationale"],
                       "ECE answer": v["ece_sc/answer"], "ECE rationale": v["ece_sc/rationale"]}
                      for k, v in smol.items()],
                     ["task", "acc answer", "acc rationale", "greedy answer", "greedy rationale", "ECE answer",
                      "ECE rationale"])
    report.write(ctx.run.path)
    (ctx.run.path / "summary.json").write_text(json.dumps({
        "tasks": by_task, "fit": None if fit is None else fit.__dict__, "smollm2": smol}, indent=2), encoding="utf-8")
    gain_range = ", ".join(f"{label} {row['accuracy_gain']:+.2f}" for label, row in by_task.items())
    if fit is None:
        return f"acc gain {gain_range}; no line (equal accuracy gains)"
    slope_ci = "/".join(f"{v:.2f}" for v in fit.slope_interval)
    return f"acc gain {gain_range}; slope {fit.slope:.2f} [{slope_ci}], R² {fit.r_squared:.2f}"


def run_sft_repro(ctx: ReproContext) -> str:
    """Quick: the arithmetic difficulty sweep. Full: the whole study (every task, two seeds, SmolLM2 LoRA)."""
    if ctx.full:
        return run_study(
            ctx, ARITHMETIC_TASKS + CLASSIFICATION_TASKS, FULL, smollm2=True,
            title="Rationales Are Not Silver Bullets: the full toy-scale study",
            what="Every task of both quick halves: modular arithmetic of 1 and of 3 steps (the difficulty sweep) and "
                 "the classification-like sentiment, topic and paraphrase tasks, each trained with answer-only and "
                 "with rationale+answer targets over two seeds (seed 0 is the quick halves' seed); then LoRA on "
                 "SmolLM2-135M on 1-step arithmetic, a small check. The paper finds rationales help math, hurt "
                 "classification-like tasks, and the accuracy and ECE gains on one line.")
    return run_study(
        ctx, ARITHMETIC_TASKS, QUICK,
        title="Rationales Are Not Silver Bullets: the arithmetic difficulty sweep (quick)",
        what="Modular arithmetic word problems of 1 and of 3 steps, each trained with answer-only and with "
             "rationale+answer targets (one seed). The paper finds rationales help most on math; this half checks "
             "whether they help here and how the gain moves with the number of steps. The classification-like "
             "half is `sft-rationales-classify`; the line over all tasks is fitted in benchmarks/sft_repro.py "
             "and in `--full`; with two points here the line is only drawn, not judged.")


def run_sft_classify_repro(ctx: ReproContext) -> str:
    """The classification-like half: quick one seed, full two seeds."""
    return run_study(
        ctx, CLASSIFICATION_TASKS, FULL if ctx.full else QUICK,
        title="Rationales Are Not Silver Bullets: the classification-like tasks" + ("" if ctx.full else " (quick)"),
        what="Lexicon sentiment, keyword topic and synthetic paraphrase pairs, each trained with answer-only and "
             "with rationale+answer targets. These are the tasks where the paper finds a rationale adds little or "
             "hurts (CR/SST-2/TREC/AGNews near 0, PAWS/QQP negative): the answer-only model can learn the decision "
             "directly. The arithmetic half is `sft-rationales`; with three points here the line is only "
             "indicative.")


REPROS = [
    Repro(name="sft-rationales", title="Rationales Are Not Silver Bullets: SFT with and without rationales over an "
          "arithmetic difficulty sweep, accuracy and ECE gain", run=run_sft_repro, quick_minutes=2.4, order=80),
    Repro(name="sft-rationales-classify", title="Rationales Are Not Silver Bullets: SFT with and without rationales "
          "on classification-like tasks, accuracy and ECE gain", run=run_sft_classify_repro, quick_minutes=3.0,
          order=81),
]
